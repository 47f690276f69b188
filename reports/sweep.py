"""What mattered in a sweep, shaped for the page: ``analysis.sweep``'s ranking of the runs'
hyperparameters and the frames of its two charts.

The ranking is the analysis's (``telemetry sweep`` prints the same one): per varying
config key an importance with its 95 % interval, a permutation p-value and a verdict; the
page repeats it and never judges again. The outcome is the run comparison's metric on val
(``reports.comparison``, with its goal), else ``loss/val``. The charts' frames:

* ``lines``, the parallel coordinates folded long: a row per run and axis (the
  ``MAX_AXES`` top hyperparameters, then the outcome), the value normalised to [0, 1]
  and the real value as text for the tooltip;
* ``points``, the scatters: a row per run and hyperparameter (``MAX_SCATTERS``, those
  that matter first) with the value and the outcome.

``reports.coordinates`` lays the runs out on those axes (log10, levels, and failed or
diverged runs beyond the worst end of the outcome). The runs drawn are bounded by the
page's budget (``Budget.line_points``: runs x axes); beyond it they are picked evenly
along the ranking and the page says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from reports.budget import Budget
from reports.coordinates import Axis, Coordinates, Outcome
from reports.queries import query

if TYPE_CHECKING:
    from analysis import Store
    from analysis.sweep import Param, RunOutcome, Sweep
    from reports.comparison import Comparison

MAX_AXES = 6
"""Hyperparameter axes of the parallel coordinates, the most important first."""

MAX_SCATTERS = 4
"""Scatters of a hyperparameter against the outcome: those that matter first."""

MAX_RANKED = 30
"""Rows of the ranking table; the rest are counted (``telemetry sweep`` lists them all)."""

MATTERS, NO_EVIDENCE, A_NAME = "matters", "no evidence", "a name"

_VALUES = query("sweep_values")


@dataclass(frozen=True)
class Mattered:
    """The sweep of the report's runs, its ranking and its charts' frames."""

    metric: str
    """``loss/val``: the metric whose best value is the outcome."""
    label: str
    """``best val loss``: the outcome axis's name."""
    mode: str
    runs: int
    """Runs with an outcome (a failed or diverged one counts, as the worst)."""
    failed: int
    without_outcome: int
    """Runs of the report that never logged the metric: not in the sweep."""
    enough: bool
    needed: int
    """Runs with an outcome the sweep needs before it says how much anything matters."""
    ranked: list[Param]
    """The table's rows: the sweep's ranking, ``MAX_RANKED`` at most."""
    left_out: int
    """Ranked hyperparameters beyond ``MAX_RANKED``."""
    names: list[str]
    """Keys with a different value in every run (a run's label): not ranked."""
    constant: list[str]
    axes: list[Axis]
    scattered: list[Axis]
    outcome: Outcome
    lines: pl.DataFrame
    """run, axis, index, y (0..1), value (text), score (the outcome; null when failed),
    outcome (text), state."""
    ticks: pl.DataFrame
    """axis, index, y, label: the labels along each vertical axis."""
    points: pl.DataFrame
    """param, run, x (null for levels), level, jitter, y, value, outcome (text), state."""
    medians: pl.DataFrame
    """param, level, y: the median outcome of each level of a categorical scatter."""
    drawn: int
    """Runs drawn (all ``runs`` unless the budget picked fewer)."""


def read(
    store: Store, run_ids: list[str], *, comparison: Comparison | None, budget: Budget
) -> Mattered | None:
    """The sweep of ``run_ids``, or None when they share one config (nothing ranked) or
    no run has an outcome for the metric."""
    from analysis.sweep import MIN_RUNS, SweepError, split_metric, sweep  # deferred: scipy

    metric, mode = "loss/val", None
    if comparison is not None:
        metric = f"{comparison.metric}/val"
        mode = "min" if comparison.lower_is_better else "max"
    try:
        result = sweep(store, metric=metric, mode=mode, run_ids=run_ids)
    except SweepError:
        return None
    ranked = [p for p in result.params if p.verdict != A_NAME]
    if not ranked:
        return None
    top = ranked[:MAX_AXES]
    first = [p for p in ranked if p.verdict == MATTERS]
    scattered = (first + [p for p in ranked if p.verdict != MATTERS])[:MAX_SCATTERS]
    runs = _drawn(result, max(2, budget.line_points // (len(top) + 1)))
    name, split = split_metric(result.metric)
    keys = list(dict.fromkeys(p.name for p in [*top, *scattered]))
    rows = store.sql(
        _VALUES,
        {
            "name": name,
            "split": split,
            "goal": result.mode,
            "keys": keys,
            "run_ids": [r.run_id for r in runs],
        },
    )
    values = {(str(r), str(k)): (str(v), n) for r, k, v, n in rows.iter_rows()}
    axes = {
        p.name: Axis.of(p.name, p.kind, [values.get((r.run_id, p.name)) for r in runs])
        for p in [*top, *scattered]
    }
    outcome = Outcome.of(runs, result.mode)
    label = f"best {split} {name}" if split else f"best {name}"
    if label in keys:  # a config key may be spelled like the outcome: axes are by name
        label += " (outcome)"
    shown = [axes[p.name] for p in top]
    levels = {p.name: sorted(p.levels) for p in ranked}
    charted = Coordinates(runs, values, outcome, levels)
    return Mattered(
        metric=result.metric,
        label=label,
        mode=result.mode,
        runs=len(result.runs),
        failed=sum(r.failed for r in result.runs),
        without_outcome=len(set(run_ids) - {r.run_id for r in result.runs}),
        enough=result.enough,
        needed=MIN_RUNS,
        ranked=ranked[:MAX_RANKED],
        left_out=max(0, len(ranked) - MAX_RANKED),
        names=[p.name for p in result.params if p.verdict == A_NAME],
        constant=result.constant,
        axes=shown,
        scattered=[axes[p.name] for p in scattered],
        outcome=outcome,
        lines=charted.lines(shown, label),
        ticks=charted.ticks(shown, label),
        points=charted.points([axes[p.name] for p in scattered]),
        medians=charted.medians([axes[p.name] for p in scattered]),
        drawn=len(runs),
    )


def _drawn(result: Sweep, limit: int) -> list[RunOutcome]:
    """The sweep's runs, or ``limit`` of them picked evenly from best to worst."""
    if len(result.runs) <= limit:
        return result.runs
    sign = 1 if result.mode == "min" else -1

    def badness(r: RunOutcome) -> tuple[bool, float, str]:
        value = math.inf if r.failed or r.outcome is None else sign * r.outcome
        return (r.failed, value, r.run_id)

    ranked = sorted(result.runs, key=badness)
    picked = {round(i * (len(ranked) - 1) / (limit - 1)) for i in range(limit)}
    return [r for i, r in enumerate(ranked) if i in picked]
