"""The NaN origin: the collector's ``nonfinite_origin`` event, read defensively.

The collector checks every leaf module's forward output on every step and records,
once, the first module (in forward order) whose output held NaN/Inf, or
``(input)`` when the batch itself did. The payload is JSON text written by some
version of the collector: only ``module`` is required here, the rest is shown
when present.

Pure Python, no I/O: ``reports.data`` reads the events and calls ``first_origin``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from store.schema import ORIGIN_INPUT

log = logging.getLogger(__name__)

INPUT = ORIGIN_INPUT
"""The origin's module when the model's input was already non-finite."""


@dataclass(frozen=True)
class NanOrigin:
    """The first module whose forward output held NaN/Inf (the collector's per-step check).

    The payload's fields beyond ``module`` are optional: the collector records the
    output's sum; other versions recorded the count of non-finite elements, or the
    output's min and max.
    """

    module: str
    module_type: str
    step: int
    nonfinite: int | None
    numel: int | None
    minimum: str | None = None
    maximum: str | None = None
    """The output's min and max as the payload spelled them ("-Infinity", "NaN", 1e+38)."""
    total: str | None = None
    """The output's sum as the payload spelled it ("NaN", "Infinity", "-Infinity")."""
    later: list[int] = field(default_factory=list)
    """Steps of further reports (a resumed attempt checks again)."""

    @property
    def detail(self) -> str:
        """``12 of 512 elements non-finite``, or ``131,072 elements, holds +Inf``."""
        parts = []
        if self.nonfinite is not None:
            of = f" of {self.numel:,}" if self.numel is not None else ""
            parts.append(f"{self.nonfinite:,}{of} elements non-finite")
        elif self.numel is not None:
            parts.append(f"{self.numel:,} elements")
        if self.minimum is not None:
            parts.append(f"min {self.minimum}")
        if self.maximum is not None:
            parts.append(f"max {self.maximum}")
        if self.total is not None:
            parts.append(_HOLDS.get(self.total, f"sum {self.total}"))
        return ", ".join(parts)


_HOLDS = {
    "Infinity": "holds +Inf",
    "-Infinity": "holds -Inf",
    "NaN": "holds NaN (or both +Inf and -Inf)",
}


def first_origin(events: Iterable[tuple[int, str | None]], *, run_id: str) -> NanOrigin | None:
    """The earliest readable origin of (step, payload) ``events`` in step order, or None.

    A payload that is not a JSON object naming a module is skipped with a warning.
    """
    found: list[tuple[int, dict[str, Any]]] = []
    for step, payload in events:
        try:
            parsed = json.loads(payload or "")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("module"), str):
            found.append((int(step), parsed))
        else:
            log.warning("run %s: unreadable nonfinite_origin payload at step %s", run_id, step)
    if not found:
        return None
    step, first = found[0]
    return NanOrigin(
        module=first["module"],
        module_type=str(first.get("module_type") or ""),
        step=step,
        nonfinite=_int_or_none(first.get("nonfinite")),
        numel=_int_or_none(first.get("numel")),
        minimum=_text_or_none(first.get("min")),
        maximum=_text_or_none(first.get("max")),
        total=_text_or_none(first.get("sum")),
        later=sorted({s for s, _ in found[1:] if s != step}),
    )


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return int(value)
    return None
