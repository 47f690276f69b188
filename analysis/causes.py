"""Causes linked to consequences: a finding that another finding of the same run explains.

Rules judge one symptom each, so one fault often shows as several findings: dead ReLUs
block the gradients of every layer before them (``unused_parameters`` with zero
gradients, ``vanishing_gradients``), a NaN makes the loss diverge, a gradient explosion
makes it spike. Reported side by side they read as separate problems with separate
fixes; linked, the consequence is shown under its cause (``Finding.caused_by``) and the
user fixes the cause.

A link is declared here, once, as (consequence rule, cause rules in order of
preference, a test on the pair). A consequence takes the first cause rule that has a
finding in the same run for which the test holds; among several findings of that rule,
the earliest. The links form no cycle (a test holds them to it), so a chain of
causes always ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from analysis.findings import Finding


def _always(consequence: Finding, cause: Finding) -> bool:
    return True


def _zero_gradients(consequence: Finding, cause: Finding) -> bool:
    """Dead units explain gradients that are all zero, not gradients that never came."""
    return consequence.evidence.get("cause") == "zero_gradient"


def _not_after(consequence: Finding, cause: Finding) -> bool:
    """A cause seen after its consequence's first step cannot have started it."""
    if consequence.step is None or cause.step is None:
        return True
    return cause.step <= consequence.step


@dataclass(frozen=True)
class Link:
    consequence: str
    causes: tuple[str, ...]
    holds: Callable[[Finding, Finding], bool] = _always
    why: str = ""


LINKS: tuple[Link, ...] = (
    Link("divergence", ("nonfinite",), _always, "a NaN/Inf makes every later loss NaN"),
    Link(
        "divergence",
        ("exploding_gradients",),
        _not_after,
        "an exploding step threw the weights off",
    ),
    Link(
        "loss_spike",
        ("exploding_gradients",),
        _not_after,
        "a gradient jump made the step that spiked",
    ),
    Link(
        "unused_parameters",
        ("dead_relu",),
        _zero_gradients,
        "dead units pass no gradient back to the layers before them",
    ),
    Link(
        "vanishing_gradients",
        ("dead_relu", "saturated_activations"),
        _always,
        "dead or saturated units pass (almost) no gradient back",
    ),
    Link(
        "stalled_parameters",
        ("dead_relu", "vanishing_gradients"),
        _always,
        "parameters that get no gradient do not move",
    ),
    Link(
        "loss_not_decreasing",
        ("nonfinite", "dead_relu", "vanishing_gradients"),
        _always,
        "the loss cannot fall when the model stops learning",
    ),
)
"""Every link; the order of ``causes`` is the order of preference."""


def link(findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` with ``caused_by`` set where a declared link holds (order kept)."""
    found = list(findings)
    by_run: dict[str, dict[str, list[Finding]]] = {}
    for f in found:
        by_run.setdefault(f.run_id, {}).setdefault(f.rule, []).append(f)
    out = []
    for f in found:
        cause = _cause(f, by_run[f.run_id])
        out.append(f if cause is None else dataclasses.replace(f, caused_by=cause.key))
    return out


def _cause(consequence: Finding, of_run: dict[str, list[Finding]]) -> Finding | None:
    for declared in LINKS:
        if declared.consequence != consequence.rule:
            continue
        for rule in declared.causes:
            candidates = [c for c in of_run.get(rule, []) if declared.holds(consequence, c)]
            if candidates:
                # the earliest; ties by subject, so the link never depends on query order
                return min(candidates, key=lambda c: (c.step is None, c.step or 0, c.key))
    return None
