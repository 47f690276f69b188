"""A module x step grid of one activation statistic, bounded in cells, honest about reduction.

A heatmap of every module at every sampled step grows with both: 200 modules x
10,000 sampled steps is two million cells and a page no browser opens. So the
steps become at most ``columns`` buckets of consecutive sampled steps (fewer when
there are many modules: ``CELL_BUDGET`` cells per chart), and only the first
``MAX_ROWS`` modules in forward order get a row. As in ``reports.decimate``, a
bucket does not average its values away: its colour is the value furthest from
the module's own median (on a log scale for ``log`` statistics), the tooltip gives
the bucket's min and max, and a value that cannot be drawn (NaN, Inf, null, and
<= 0 on a log scale) anywhere in the bucket marks the whole cell.

Pure Polars, no I/O: ``reports.data`` applies ``grid`` to what it reads, and for the
gradients, whose rows a long run holds millions of, buckets them in the database and
finishes the cells with ``assemble``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.series import LABEL, SIG_DIGITS

TIP_DIGITS = 4
"""Digits of a cell's min and max: only the tooltip shows them, with four."""

CELL_BUDGET = Budget().cells
"""Cells one heatmap may draw (each cell is a row of JSON in the page), by default."""

MAX_COLUMNS = 100
"""Step buckets at most, however few the modules."""

MIN_COLUMNS = 10
"""Step buckets at least (when there are that many sampled steps), however many modules."""

MAX_ROWS = 150
"""Modules drawn at most; the rest are named by count under the chart."""

LAST = "last_step"
"""Column of ``assemble``'s input: the last sampled step of a cell's bucket."""

_BUCKET = "__bucket"
_DEV = "__dev"


@dataclass(frozen=True)
class Heatmap:
    """Cells to colour, cells to mark, and the counts that the sentence under the chart needs.

    ``cells``: module, module_type, step (first of the bucket), steps (the bucket as
    text), value, lo, hi, n. ``markers``: the same without value/lo/hi, plus ``label``.
    When every column is one step, ``steps``, ``lo``, ``hi`` and ``n`` are left out.
    """

    cells: pl.DataFrame
    markers: pl.DataFrame
    order: list[str]
    """Modules drawn, in forward order (the rows, top to bottom)."""
    modules: int
    """Modules read (``len(order)`` is smaller when some were left out)."""
    steps: int
    """Sampled steps read."""
    columns: int
    """Step buckets drawn."""

    @property
    def note(self) -> str | None:
        """The sentence under the chart when steps were bucketed or modules left out."""
        parts = []
        if self.columns < self.steps:
            parts.append(
                f"{self.steps:,} sampled steps drawn as {self.columns:,} columns, each a run of "
                "consecutive steps coloured by its value furthest from the module's median "
                "(the tooltip gives the min and max; a NaN/Inf anywhere marks the cell)"
            )
        if len(self.order) < self.modules:
            parts.append(
                f"the first {len(self.order):,} of {self.modules:,} modules in forward order "
                "are drawn"
            )
        return "; ".join(parts).capitalize() + "." if parts else None


def bounds(budget: Budget) -> dict[str, int]:
    """``grid``'s bounds from a run's budget: its cells, and as many rows as leave
    ``MIN_COLUMNS`` columns each (up to ``MAX_ROWS``)."""
    return {"cell_budget": budget.cells, "max_rows": min(MAX_ROWS, budget.cells // MIN_COLUMNS)}


def grid(
    points: pl.DataFrame,
    markers: pl.DataFrame,
    *,
    value: str,
    order: Sequence[str],
    log: bool = False,
    cell_budget: int = CELL_BUDGET,
    max_rows: int = MAX_ROWS,
) -> Heatmap:
    """Bucket the rows of one statistic (one row per module and sampled step).

    ``points``: module, module_type, step, ``value`` (drawable). ``markers``: module,
    module_type, step, ``label`` (see ``reports.data.split_drawable``). ``order``
    lists the modules in forward order; ``log`` measures deviations as ratios.
    """
    shown = list(order)[:max_rows]
    steps = pl.concat([points["step"], markers["step"]]).unique().sort()
    n_steps = steps.len()
    n_columns = columns(n_steps, rows=len(shown), cell_budget=cell_budget)
    # Bucket b holds the sampled steps whose rank r has r * columns // n == b.
    ranks = pl.int_range(n_steps, eager=True, dtype=pl.Int64)
    buckets = pl.DataFrame({"step": steps, _BUCKET: ranks * n_columns // max(1, n_steps)})
    spans = buckets.group_by(_BUCKET).agg(
        pl.col("step").min().alias("step"), pl.col("step").max().alias(LAST)
    )
    keys = ["module", _BUCKET]
    bad = (
        markers.filter(pl.col("module").is_in(shown))
        .join(buckets, on="step")
        .sort("step")
        .group_by(keys, maintain_order=True)
        .agg(pl.col("module_type").first(), pl.col(LABEL).first(), pl.len().alias("n"))
    )
    v = pl.col(value)
    scaled = v.log10() if log else v
    good = (
        points.filter(pl.col("module").is_in(shown))
        .join(buckets, on="step")
        .join(bad.select(keys), on=keys, how="anti")
        .with_columns((scaled - scaled.median().over("module")).abs().alias(_DEV))
    )
    cells = good.group_by(keys).agg(
        pl.col("module_type").first(),
        v.sort_by(_DEV, descending=True).first(),
        v.min().alias("lo"),
        v.max().alias("hi"),
        pl.len().alias("n"),
    )
    return assemble(
        cells.join(spans, on=_BUCKET),
        bad.join(spans, on=_BUCKET),
        value=value,
        shown=shown,
        modules=len(order),
        steps=n_steps,
        columns=n_columns,
    )


def columns(steps: int, *, rows: int, cell_budget: int = CELL_BUDGET) -> int:
    """Step buckets of a heatmap of ``rows`` modules over ``steps`` sampled steps."""
    per_row = cell_budget // max(1, rows)
    return min(steps, max(MIN_COLUMNS, min(MAX_COLUMNS, per_row)))


def assemble(
    cells: pl.DataFrame,
    bad: pl.DataFrame,
    *,
    value: str,
    shown: list[str],
    modules: int,
    steps: int,
    columns: int,
) -> Heatmap:
    """The ``Heatmap`` of bucketed cells, however they were computed (here, or by the
    database in ``reports.data``).

    ``cells``: module, module_type, step and ``LAST`` (the bucket's first and last
    sampled step), ``value`` (the one furthest from the module's median), lo, hi, n.
    ``bad``: module, module_type, step, ``LAST``, ``label`` (the bucket's first), n.
    """
    steps_text = (
        pl.when(pl.col("step") == pl.col(LAST))
        .then(pl.col("step").cast(pl.String))
        .otherwise(pl.format("{}–{}", pl.col("step"), pl.col(LAST)))
        .alias("steps")
    )
    out = ["module", "module_type", "step", "steps"]
    cell_cols, marker_cols = [*out, value, "lo", "hi", "n"], [*out, "n", LABEL]
    if columns == steps:
        # One step per cell: the bucket's text, range and count say nothing (and are
        # half of a cell's bytes).
        cell_cols, marker_cols = [*out[:3], value], [*out[:3], LABEL]
    return Heatmap(
        cells.with_columns(steps_text)
        .select(cell_cols)
        .with_columns(
            pl.col(c).round_sig_figs(SIG_DIGITS if c == value else TIP_DIGITS)
            for c in (value, "lo", "hi")
            if c in cell_cols
        )
        .sort("module", "step"),
        bad.with_columns(steps_text).select(marker_cols).sort("module", "step"),
        shown,
        modules,
        steps,
        columns,
    )
