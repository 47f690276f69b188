"""The "What mattered" section: the sweep's ranking table, its sentences, and its two charts.

Built from ``reports.sweep.Mattered`` (``analysis.sweep`` over every run of the report):
the sentences say what the outcome is, how many runs failed, and everything the page
left out (runs without the metric, hyperparameters beyond the table, runs beyond the
budget, keys that name a run, keys every run shares). Altair is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reports.blocks import Chart, to_spec
from reports.sweep import MATTERS, NO_EVIDENCE, Mattered

if TYPE_CHECKING:
    from analysis.sweep import Param

LISTED = 20
"""Keys named in a sentence (constant ones, names); the rest are counted."""

VERDICTS = {
    MATTERS: ("matters", "matters"),
    NO_EVIDENCE: ("no evidence it matters", "no-evidence"),
}
"""The sweep's verdict -> the words of the table and their CSS class; any other verdict
(not enough runs) is shown as it is, muted."""


@dataclass(frozen=True)
class Row:
    """One row of the ranking table, formatted (the template only lays it out)."""

    name: str
    importance: str
    interval: str
    p_value: str
    effect: str
    verdict: str
    css: str
    """matters | no-evidence | unknown: never from run data."""
    bar: int
    """The importance as a percentage: the width of its bar."""
    runs: int


@dataclass(frozen=True)
class MatteredBlock:
    sweep: Mattered
    lead: str
    rows: list[Row]
    notes: list[str]
    parallel: Chart | None
    scatter: Chart | None


def block(m: Mattered | None, ids: Iterator[str]) -> MatteredBlock | None:
    """The section's block; None when the report's runs did not differ in config."""
    if m is None:
        return None
    from reports.charts.sweep import parallel_chart, scatter_chart  # deferred: imports altair

    better = "lowest" if m.mode == "min" else "highest"
    failed = f", {m.failed:,} of them failed or diverged (ranked worst)" if m.failed else ""
    lead = (
        f"Which hyperparameters explain each run's {m.label} ({better} is best, "
        f"{m.metric}): {m.runs:,} runs{failed}."
    )
    rows = [_row(p) for p in m.ranked]
    parallel = parallel_chart(
        lines=m.lines,
        ticks=m.ticks,
        outcome=m.outcome,
        title=f"config → {m.label}: a line per run",
        subtitle=(
            f"{_hyperparameters(len(m.axes))} in the table's order, then the outcome; "
            "colour: the outcome; red dashed: failed or diverged, beyond the worst end"
        ),
    )
    scatter = scatter_chart(
        points=m.points,
        medians=m.medians,
        axes=m.scattered,
        outcome=m.outcome,
        title=f"{m.label} against the top hyperparameters",
        subtitle=(
            "a point per run (those that matter first); grey ticks: a level's median; "
            "red: failed or diverged, at the worst edge"
        ),
    )
    return MatteredBlock(
        m,
        lead,
        rows,
        _notes(m),
        Chart(next(ids), to_spec(parallel), topic="sweep"),
        Chart(next(ids), to_spec(scatter), topic="sweep_scatter") if m.scattered else None,
    )


def _row(p: Param) -> Row:
    """The table's row of ``p``: numbers formatted, empty where the sweep has none."""
    verdict, css = VERDICTS.get(p.verdict, (p.verdict, "unknown"))
    effect = (p.direction or "") if p.kind == "numeric" else f"best: {p.best_level}"
    if p.importance is None:
        return Row(p.name, "", "", "", "", verdict, css, 0, p.runs_with_value)
    interval = "" if p.low is None or p.high is None else f"{p.low:.2f} – {p.high:.2f}"
    return Row(
        p.name,
        f"{p.importance:.2f}",
        interval,
        "" if p.p_value is None else f"{p.p_value:.3f}",
        effect,
        verdict,
        css,
        round(100 * min(1.0, max(0.0, p.importance))),
        p.runs_with_value,
    )


def _notes(m: Mattered) -> list[str]:
    notes = []
    if not m.enough:
        notes.append(
            f"Not enough runs to tell what mattered: {m.runs:,} with an outcome, "
            f"{m.needed} needed; no importance is computed. The charts show the runs as they are."
        )
    if m.left_out:
        notes.append(
            f"{m.left_out:,} more hyperparameters, ranked lower, are not in the table "
            "(telemetry sweep ROOT lists them all)."
        )
    if m.names:
        notes.append(f"Not ranked, a different value in every run: {_listed(m.names)}.")
    if m.constant:
        notes.append(f"The same in every run that sets it: {_listed(m.constant)}.")
    if m.without_outcome:
        runs = "run" if m.without_outcome == 1 else "runs"
        notes.append(f"{m.without_outcome:,} {runs} never logged {m.metric}: not in the sweep.")
    if m.drawn < m.runs:
        notes.append(
            f"The charts draw {m.drawn:,} of the {m.runs:,} runs, picked evenly from the best "
            "to the worst (the page's budget); the ranking uses every run."
        )
    return notes


def _hyperparameters(n: int) -> str:
    return "the first hyperparameter" if n == 1 else f"the first {n} hyperparameters"


def _listed(names: list[str]) -> str:
    more = len(names) - LISTED
    return ", ".join(names[:LISTED]) + (f", … and {more:,} more" if more > 0 else "")
