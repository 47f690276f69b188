"""Causes linked to consequences: a finding that another finding of the same run explains.

Rules judge one symptom each, so one fault often shows as several findings: dead ReLUs
block the gradients of every layer before them (``unused_parameters`` with zero
gradients, ``vanishing_gradients``), a NaN makes the loss diverge, a gradient explosion
makes it spike, a forgotten ``zero_grad`` or a learning rate too high does all of that.
Reported side by side they read as separate problems with separate (sometimes
contradictory) fixes; linked, the consequence is shown under its cause
(``Finding.caused_by``) and its suggestion points to the cause's fix instead of its own:
name the bug, not the symptom.

A link is declared here, once, as (consequence rule, cause rules in order of
preference, a test on the pair). A consequence takes the first cause rule that has a
finding in the same run for which the test holds; among several findings of that rule,
the earliest. For one consequence, the links are tried in the order declared, so the
bugs (``missing_zero_grad``, ``lr_too_high``, ...) come before the symptoms they make.
The links form no cycle (a test holds them to it), so a chain of causes always ends;
a consequence's suggestion names its direct cause and gives the fix of the chain's end
(the root), whose own suggestion is left as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
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


def _killed_in_training(consequence: Finding, cause: Finding) -> bool:
    """Training steps kill a whole layer; units dead from the start were born dead (the
    initial weights or biases), which no learning rate or gradient explains."""
    return consequence.evidence.get("reason") != "dead_from_start"


def _layer_died(consequence: Finding, cause: Finding) -> bool:
    """A layer (nearly) all dead passes nothing on; a majority dead from the start, not
    (the rest of its units still learn)."""
    return cause.evidence.get("reason") == "nearly_all_dead"


def _failed_for(consequence: Finding, cause: Finding) -> bool:
    """A failure is explained by memory only when it ran out of it, and by a NaN only
    when the NaN guard raised it."""
    why = {"memory_pressure": "out_of_memory", "nonfinite": "nonfinite"}.get(cause.rule)
    return why is not None and consequence.evidence.get("cause") == why


@dataclass(frozen=True)
class Link:
    consequence: str
    causes: tuple[str, ...]
    holds: Callable[[Finding, Finding], bool] = _always
    why: str = ""


LINKS: tuple[Link, ...] = (
    # what a bug (a forgotten zero_grad, a learning rate too high, validation in training
    # mode) or a model at chance explains
    Link(
        "lr_too_high",
        ("missing_zero_grad",),
        _always,
        "gradients that pile up make every step too large, whatever the learning rate",
    ),
    Link(
        "exploding_gradients",
        ("missing_zero_grad", "lr_too_high", "unnormalized_inputs"),
        _always,
        "summed-up gradients grow every step; too large a step throws the weights "
        "where the gradients are huge; inputs in the hundreds scale every gradient of "
        "the first layer by as much",
    ),
    Link(
        "dead_relu",
        ("missing_zero_grad", "lr_too_high"),
        _killed_in_training,
        "one step too large pushes a layer's pre-activations below zero for every input",
    ),
    Link(
        "update_ratio",
        ("missing_zero_grad", "lr_too_high"),
        _always,
        "the step is the learning rate times the (piled-up) gradient",
    ),
    Link(
        "loss_oscillation",
        ("missing_zero_grad", "lr_too_high"),
        _always,
        "steps too large overshoot the minimum, back and forth",
    ),
    Link(
        "chance_level",
        ("missing_zero_grad", "lr_too_high"),
        _always,
        "a model thrown off by steps too large predicts one class",
    ),
    Link(
        "chance_level",
        ("dead_relu",),
        _layer_died,
        "a layer whose units are (nearly) all dead passes the same output for every input",
    ),
    Link(
        "chance_level",
        ("vanishing_gradients", "poor_initialization"),
        _always,
        "early layers that get no gradient, or units made alike by their initialisation "
        "(all zero), learn nothing about the input",
    ),
    Link(
        "prediction_collapse",
        ("missing_zero_grad", "lr_too_high", "nonfinite"),
        _always,
        "a model thrown off by steps too large predicts one class; NaN scores have one argmax",
    ),
    Link(
        "prediction_collapse",
        ("dead_relu",),
        _layer_died,
        "a layer whose units are (nearly) all dead passes the same output for every input",
    ),
    Link(
        "prediction_collapse",
        ("vanishing_gradients", "saturated_activations", "poor_initialization"),
        _always,
        "early layers that get no gradient, saturated units or units made alike learn "
        "nothing about the input: the output is the same for every one",
    ),
    Link(
        "prediction_collapse",
        ("class_imbalance", "unnormalized_inputs"),
        _always,
        "where one class fills the training labels, predicting it is the cheapest loss; "
        "inputs on raw scales drown what tells the classes apart",
    ),
    Link(
        "overfitting",
        ("missing_eval_mode",),
        _always,
        "validation in training mode (dropout on, batch statistics) scores worse than the model is",
    ),
    # symptoms explained by a bug first, then by other symptoms
    # (the order of the causes within a link, and of the links of one consequence, is
    # the order of preference)
    Link(
        "divergence",
        ("missing_zero_grad", "lr_too_high", "nonfinite"),
        _always,
        "steps too large make the loss climb; a NaN/Inf makes every later loss NaN",
    ),
    Link(
        "divergence",
        ("exploding_gradients",),
        _not_after,
        "an exploding step threw the weights off",
    ),
    Link(
        "loss_spike",
        ("missing_zero_grad",),
        _always,
        "summed-up gradients make an occasional step far too large",
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
        ("dead_relu", "saturated_activations", "lr_too_high"),
        _always,
        "dead or saturated units pass (almost) no gradient back; a blow-up leaves a "
        "net whose early layers get none",
    ),
    Link(
        "stalled_parameters",
        ("dead_relu", "vanishing_gradients"),
        _always,
        "parameters that get no gradient do not move",
    ),
    Link(
        "loss_not_decreasing",
        (
            "missing_zero_grad",
            "lr_too_high",
            "nonfinite",
            "dead_relu",
            "vanishing_gradients",
            "chance_level",
        ),
        _always,
        "the loss cannot fall when the steps are wrong or the model stops learning",
    ),
    Link(
        "underfitting",
        ("lr_too_high", "chance_level", "unnormalized_inputs"),
        _always,
        "a run thrown off by steps too large, one that learns nothing, or one fed inputs "
        "on scales its optimizer cannot balance, is not short of capacity",
    ),
    Link(
        "accuracy_plateau",
        ("missing_eval_mode", "chance_level", "unnormalized_inputs"),
        _always,
        "validation in training mode, a model at chance, or features on scales 100x "
        "apart (the small ones barely move), plateau for other reasons",
    ),
    Link(
        "early_stopping",
        ("missing_eval_mode", "chance_level"),
        _always,
        "validation in training mode, or a model at chance, has no best epoch to stop at",
    ),
    Link(
        "run_failed",
        ("memory_pressure", "nonfinite"),
        _failed_for,
        "a run that ran out of memory, or that the NaN guard stopped, failed for that",
    ),
)
"""Every link; the order of ``causes`` is the order of preference."""


def link(findings: Iterable[Finding], titles: Mapping[str, str] | None = None) -> list[Finding]:
    """``findings`` with ``caused_by`` set where a declared link holds (order kept).

    A consequence's ``suggestion`` becomes a pointer to its cause, with the fix of the
    chain's end (the root cause) instead of its own, which would treat the symptom
    (and may contradict it: "use ReLU" for a net whose ReLUs a learning rate killed).
    ``titles`` (rule id -> title) names the rules in that pointer; else their ids.
    """
    found = list(findings)
    by_run: dict[str, dict[str, list[Finding]]] = {}
    for f in found:
        by_run.setdefault(f.run_id, {}).setdefault(f.rule, []).append(f)
    causes = {id(f): _cause(f, by_run[f.run_id]) for f in found}
    out = []
    for f in found:
        chain = _chain(f, causes)
        if not chain:
            out.append(f)
            continue
        out.append(
            dataclasses.replace(f, caused_by=chain[0].key, suggestion=_pointer(chain, titles or {}))
        )
    return out


def _chain(f: Finding, causes: Mapping[int, Finding | None]) -> list[Finding]:
    """``f``'s cause, that cause's cause, ... to the root (the links form no cycle; a
    finding seen twice ends the chain all the same)."""
    chain: list[Finding] = []
    seen = {id(f)}
    cause = causes.get(id(f))
    while cause is not None and id(cause) not in seen:
        chain.append(cause)
        seen.add(id(cause))
        cause = causes.get(id(cause))
    return chain


def _pointer(chain: list[Finding], titles: Mapping[str, str]) -> str:
    def name(f: Finding) -> str:
        where = [w for w in (f.subject, f"step {f.step}" if f.step is not None else None) if w]
        title = titles.get(f.rule, f.rule)
        return f"{title} ({', '.join(where)})" if where else title

    said = "Explained by " + name(chain[0])
    if len(chain) > 1:
        said += "".join(f", itself explained by {name(c)}" for c in chain[1:])
    return f"{said}: fix that first. {chain[-1].suggestion}"


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
