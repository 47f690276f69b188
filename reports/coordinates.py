"""The runs of a sweep laid out on the axes of the "What mattered" charts (``reports.sweep``).

Every value becomes a position: a number normalised to [0, 1] by min-max, of log10 where
the values span ``LOG_SPAN`` or more; a level evenly spaced in the levels' sorted order;
the outcome the same way, except for a failed, crashed or diverged run, which has no
comparable outcome and sits beyond the worst end of the axis (``GAP``), in a ``state`` of
its own. The real values travel as text beside the positions, for the tooltips.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from reports.blocks import display_name

if TYPE_CHECKING:
    from analysis.sweep import RunOutcome

LOG_SPAN = 100.0
"""Positive values spanning two decades or more are drawn on log10."""

GAP = 0.12
"""How far beyond the worst end of the outcome axis failed runs sit (a share of the axis)."""

MAX_LEVELS_LABELLED = 12
"""Levels of a categorical axis with a label; beyond, every n-th one."""

OK = "outcome"
"""The ``state`` of a run with an outcome; the others are failed, crashed, diverged."""

Value = tuple[str, float | None]
"""A config value as text, and as a number when it is one."""


@dataclass(frozen=True)
class Axis:
    """A hyperparameter drawn: on a log10 axis or not (levels never are)."""

    name: str
    kind: str
    """numeric | categorical"""
    log: bool = False

    @staticmethod
    def of(name: str, kind: str, values: list[Value | None]) -> Axis:
        if kind != "numeric":
            return Axis(name, "categorical")
        numbers = [n for v in values if v is not None and (n := v[1]) is not None and _finite(n)]
        lo, hi = (min(numbers), max(numbers)) if numbers else (0.0, 0.0)
        return Axis(name, "numeric", log=lo > 0 and hi / lo >= LOG_SPAN)


@dataclass(frozen=True)
class Outcome:
    """The outcome axis: the range of the outcomes, and where the failed runs sit."""

    lo: float
    hi: float
    log: bool
    mode: str

    @staticmethod
    def of(runs: list[RunOutcome], mode: str) -> Outcome:
        finite = [r.outcome for r in runs if not r.failed and r.outcome is not None]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        return Outcome(lo, hi, lo > 0 and hi / lo >= LOG_SPAN, mode)

    def position(self, value: float | None) -> float:
        """``value`` normalised to [0, 1]; None (a failed run): beyond the worst end."""
        if value is None:
            return 1 + GAP if self.mode == "min" else -GAP
        return _unit(value, self.lo, self.hi, log=self.log)

    @property
    def worst(self) -> float:
        """The failed runs' place on a real-valued axis, beyond the worst outcome."""
        lo, hi = (math.log10(self.lo), math.log10(self.hi)) if self.log else (self.lo, self.hi)
        step = GAP * ((hi - lo) or abs(hi) or 1.0)
        edge = hi + step if self.mode == "min" else lo - step
        return 10**edge if self.log else edge

    @property
    def domain(self) -> tuple[float, float]:
        """The scatter's y range: every outcome and the failed runs' place, padded."""
        ends = sorted([self.lo, self.hi, self.worst])
        if self.log:
            pad = 10 ** (0.04 * (math.log10(ends[2]) - math.log10(ends[0]) or 1.0))
            return ends[0] / pad, ends[2] * pad
        pad = 0.04 * ((ends[2] - ends[0]) or 1.0)
        return ends[0] - pad, ends[2] + pad


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _unit(value: float, lo: float, hi: float, *, log: bool) -> float:
    """``value`` between ``lo`` (0) and ``hi`` (1), on log10 when ``log``; 0.5 when lo == hi."""
    if log:
        value, lo, hi = math.log10(value), math.log10(lo), math.log10(hi)
    return 0.5 if hi <= lo else (value - lo) / (hi - lo)


def _number(x: float) -> str:
    return f"{x:.4g}"


class Coordinates:
    """The drawn runs' values, laid out as the frames of the two charts."""

    def __init__(
        self,
        runs: list[RunOutcome],
        values: dict[tuple[str, str], Value],
        outcome: Outcome,
        levels: dict[str, list[str]],
    ) -> None:
        self.runs, self.values, self.outcome, self.levels = runs, values, outcome, levels
        numbers: dict[str, list[float]] = {}
        for (_, key), (_, n) in values.items():
            if n is not None and _finite(n):
                numbers.setdefault(key, []).append(n)
        self.ranges = {key: (min(ns), max(ns)) for key, ns in numbers.items()}
        counts = Counter(r.name for r in runs)
        self.names = {
            r.run_id: r.name if counts[r.name] == 1 else display_name(r.name, r.run_id)
            for r in runs
        }

    def _state(self, r: RunOutcome) -> str:
        if not r.failed:
            return OK
        return "diverged" if r.diverged else r.status

    def _outcome_text(self, r: RunOutcome) -> str:
        if not r.failed:
            return "" if r.outcome is None else _number(r.outcome)
        before = f" (best {_number(r.outcome)} before)" if r.outcome is not None else ""
        return f"{self._state(r)}: ranked worst{before}"

    def _range(self, axis: Axis) -> tuple[float, float]:
        return self.ranges.get(axis.name, (0.0, 0.0))

    def _y(self, axis: Axis, value: Value) -> float | None:
        text, number = value
        if axis.kind == "numeric":
            if number is None or not _finite(number):
                return None
            lo, hi = self._range(axis)
            return _unit(number, lo, hi, log=axis.log)
        levels = self.levels[axis.name]
        return levels.index(text) / (len(levels) - 1) if text in levels and len(levels) > 1 else 0.5

    def lines(self, axes: list[Axis], label: str) -> pl.DataFrame:
        """The parallel coordinates folded long: a row per run and axis, the outcome last."""
        rows = []
        for r in self.runs:
            common = {
                "run": self.names[r.run_id],
                "score": None if r.failed else r.outcome,
                "outcome": self._outcome_text(r),
                "state": self._state(r),
            }
            for i, axis in enumerate(axes):
                value = self.values.get((r.run_id, axis.name))
                y = None if value is None else self._y(axis, value)
                if value is not None and y is not None:
                    rows.append({"axis": axis.name, "index": i, "y": y, "value": value[0]} | common)
            y = self.outcome.position(None if r.failed else r.outcome)
            text = common["outcome"]
            rows.append({"axis": label, "index": len(axes), "y": y, "value": text} | common)
        return pl.DataFrame(rows, schema=_LINES)

    def ticks(self, axes: list[Axis], label: str) -> pl.DataFrame:
        """The labels along each vertical axis: a numeric one's ends, a categorical one's levels."""
        rows: list[tuple[str, int, float, str]] = []
        for i, axis in enumerate(axes):
            if axis.kind == "numeric":
                lo, hi = self._range(axis)
                scale = " (log)" if axis.log else ""
                ends = [(0.0, _number(lo)), (1.0, _number(hi) + scale)] if hi > lo else []
                rows += [(axis.name, i, y, text) for y, text in ends or [(0.5, _number(lo))]]
            else:
                levels = self.levels[axis.name]
                every = math.ceil(len(levels) / MAX_LEVELS_LABELLED)
                rows += [
                    (axis.name, i, self._y(axis, (level, None)) or 0.0, level)
                    for level in levels[::every]
                ]
        o, n = self.outcome, len(axes)
        if any(not r.failed for r in self.runs):
            scale = " (log)" if o.log else ""
            rows += [(label, n, 0.0, _number(o.lo)), (label, n, 1.0, _number(o.hi) + scale)]
        if any(r.failed for r in self.runs):
            rows.append((label, n, o.position(None), "failed / diverged"))
        return pl.DataFrame(rows, schema=_TICKS, orient="row")

    def points(self, axes: list[Axis]) -> pl.DataFrame:
        """The scatters: a row per hyperparameter and run, failed runs at the worst edge."""
        rows = []
        for axis in axes:
            for i, r in enumerate(self.runs):
                value = self.values.get((r.run_id, axis.name))
                if value is None or (axis.kind == "numeric" and not _finite(value[1])):
                    continue
                failed = r.failed or r.outcome is None
                rows.append(
                    {
                        "param": axis.name,
                        "run": self.names[r.run_id],
                        "x": value[1] if axis.kind == "numeric" else None,
                        "level": None if axis.kind == "numeric" else value[0],
                        # Deterministic jitter: runs at one level spread sideways.
                        "jitter": ((i * 0.618034) % 1.0 - 0.5) * 0.7,
                        "y": self.outcome.worst if failed else r.outcome,
                        "value": value[0],
                        "outcome": self._outcome_text(r),
                        "state": self._state(r),
                    }
                )
        return pl.DataFrame(rows, schema=_POINTS)

    def medians(self, axes: list[Axis]) -> pl.DataFrame:
        """The median outcome of each level of the categorical ``axes`` (runs with one)."""
        points = self.points([a for a in axes if a.kind == "categorical"])
        return (
            points.filter(pl.col("state") == OK)
            .group_by("param", "level", maintain_order=True)
            .agg(pl.col("y").median())
        )


_LINES = {
    "axis": pl.String,
    "index": pl.Int32,
    "y": pl.Float64,
    "value": pl.String,
    "run": pl.String,
    "score": pl.Float64,
    "outcome": pl.String,
    "state": pl.String,
}
_TICKS = {"axis": pl.String, "index": pl.Int32, "y": pl.Float64, "label": pl.String}
_POINTS = {
    "param": pl.String,
    "run": pl.String,
    "x": pl.Float64,
    "level": pl.String,
    "jitter": pl.Float64,
    "y": pl.Float64,
    "value": pl.String,
    "outcome": pl.String,
    "state": pl.String,
}
