"""Run comparison: every run's hyperparameters against its best validation metric.

A sweep is read at a glance when each run is one row (its config values, then its
best and final validation metrics) and each hyperparameter that varies between
runs is one small chart of its value against the best metric. "Best" follows the
metric's goal (the ``metric_goals`` view: the run's ``tel.define_metric()``, else the
name's words, ``store.metrics``): the lowest value of a loss, perplexity or
bits-per-character, the highest of an accuracy or F1; the page says which. A metric
with no goal has no best value and is never the one compared.
Only config keys whose values differ between runs are columns: a key every run
shares explains nothing.

Pure Polars, no I/O: ``reports.data`` reads the frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

PREFERRED = ("loss", "acc", "accuracy")
"""The comparison's primary metric: the first of these the runs have on val, else the first name."""

MAX_PARAMS = 8
"""Hyperparameters drawn as charts (the table lists more)."""

MAX_COLUMNS = 20
"""Varying configuration keys the table lists (in the configs' order); the rest are named."""

LISTED = 20
"""Left-out keys named under the table; the rest are counted."""


@dataclass(frozen=True)
class Metric:
    """One run's validation metric: its best and final value, and its goal."""

    name: str
    best: float | None
    """The lowest value for goal "min", the highest for "max"; None without a goal."""
    final: float | None
    goal: str | None = None


@dataclass(frozen=True)
class ComparisonRow:
    run_id: str
    name: str
    status: str
    values: list[str]
    """One per ``Comparison.params``: the config value as text ("" when the run lacks it)."""
    best: float | None
    """The primary metric's best value (None when the run has no finite one)."""


@dataclass(frozen=True)
class Comparison:
    metric: str
    lower_is_better: bool
    params: list[str]
    rows: list[ComparisonRow]
    points: pl.DataFrame
    """hyperparameter, run, value (text), x (float, null when not numeric), best."""
    left_out: list[str] = field(default_factory=list)
    """Varying keys beyond ``MAX_COLUMNS``: not in the table."""

    @property
    def note(self) -> str | None:
        """The sentence under the table when keys were left out of it."""
        if not self.left_out:
            return None
        listed = ", ".join(self.left_out[:LISTED])
        more = len(self.left_out) - LISTED
        return (
            f"{len(self.left_out):,} more varying configuration keys are not in the table "
            f"({listed}{f', … and {more:,} more' if more > 0 else ''}); "
            'telemetry query ROOT "SELECT run_id, config FROM runs" reads every run\'s config.'
        )


def val_metrics(frame: pl.DataFrame) -> dict[str, list[Metric]]:
    """Run id -> its validation metrics. ``frame``: run_id, metric, lowest, highest,
    final, goal ("min", "max" or null: the ``metric_goals`` view)."""
    out: dict[str, list[Metric]] = {}
    for r in frame.iter_rows(named=True):
        goal = r.get("goal")
        best = r["lowest"] if goal == "min" else r["highest"] if goal == "max" else None
        out.setdefault(str(r["run_id"]), []).append(Metric(r["metric"], best, r["final"], goal))
    for metrics in out.values():
        metrics.sort(key=lambda m: (m.goal is None, _rank(m.name), m.name))
    return out


def _rank(metric: str) -> int:
    return PREFERRED.index(metric) if metric in PREFERRED else len(PREFERRED)


def config(text: str | None) -> dict[str, Any]:
    """A run's config (JSON text) as a dict; anything else becomes {"config": text}."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"config": text}
    return parsed if isinstance(parsed, dict) else {"config": parsed}


def as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def compare(runs: pl.DataFrame, metrics: dict[str, list[Metric]]) -> Comparison | None:
    """The comparison of ``runs`` (run_id, name, status, config), or None with fewer than 2.

    Also None when no run has a validation metric: there is nothing to compare against.
    """
    if runs.height < 2:
        return None
    goals = {m.name: m.goal for ms in metrics.values() for m in ms if m.goal is not None}
    names = sorted(goals, key=lambda n: (_rank(n), n))
    if not names:  # no validation metric with a goal: no "best" to compare
        return None
    metric = names[0]
    rows = runs.to_dicts()
    configs = {str(r["run_id"]): config(r.get("config")) for r in rows}
    keys = list(dict.fromkeys(k for c in configs.values() for k in c))
    varying = [k for k in keys if len({as_text(c.get(k)) for c in configs.values()}) > 1]
    varying, left_out = varying[:MAX_COLUMNS], varying[MAX_COLUMNS:]
    table, points = [], []
    for r in rows:
        run_id = str(r["run_id"])
        best = next((m.best for m in metrics.get(run_id, []) if m.name == metric), None)
        cfg = configs[run_id]
        table.append(
            ComparisonRow(
                run_id,
                str(r.get("name") or run_id),
                str(r.get("status") or ""),
                [as_text(cfg.get(k)) for k in varying],
                best,
            )
        )
        if best is None:
            continue
        for k in varying[:MAX_PARAMS]:
            if cfg.get(k) is not None:
                name = str(r.get("name") or run_id)
                run = name if name == run_id else f"{name} ({run_id})"
                x = as_number(cfg[k])
                points.append(
                    {
                        "hyperparameter": k,
                        "run": run,
                        "value": as_text(cfg[k]),
                        "x": x,
                        "best": best,
                    }
                )
    schema = {
        "hyperparameter": pl.String,
        "run": pl.String,
        "value": pl.String,
        "x": pl.Float64,
        "best": pl.Float64,
    }
    frame = pl.DataFrame(points, schema=schema)
    return Comparison(metric, goals[metric] == "min", varying, table, frame, left_out)
