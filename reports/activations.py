"""A run's activation statistics, shaped for the page: two module x step grids and unit fractions.

The ``activations`` stream has one row per leaf module per sampled step. The page
draws the zero fraction and the std as module x step heatmaps (``reports.heatmap``
bounds and buckets them), and the dead and saturated fractions, which only some
modules record (ReLU family; bounded activations), as one line per module. A model
with hundreds of ReLUs would make that chart a tangle, so only the modules with the
highest peak are drawn, and the sentence under the chart says so.

Pure Polars, no I/O: ``reports.data`` reads the rows and calls ``summarize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.heatmap import Heatmap, bounds, grid
from reports.series import Series, first_order, series, split_drawable

MAX_FRACTION_LINES = 20
"""Modules drawn in a dead/saturated chart: those with the highest peak (more is a tangle)."""


@dataclass(frozen=True)
class Fractions:
    """A share of units per module over steps, for the modules with the highest peaks."""

    series: Series
    """module, step, and the fraction."""
    modules: int
    """Modules that record the fraction (``len(drawn)`` is smaller when some were left out)."""
    drawn: list[str]
    """The modules drawn, in forward order."""

    @property
    def note(self) -> str | None:
        parts = [self.series.note] if self.series.note else []
        if len(self.drawn) < self.modules:
            parts.append(
                f"the {len(self.drawn)} of {self.modules} modules with the highest peak are drawn"
            )
        return "; ".join(parts) + "." if parts else None


@dataclass(frozen=True)
class Activations:
    """A run's activation statistics: two module x step grids and the unit fractions."""

    order: list[str]
    """Modules in forward order: their order (``seq``) within the first step they appear."""
    zero_frac: Heatmap
    std: Heatmap
    """On a log colour scale: std <= 0 (a constant output) and NaN/Inf are markers."""
    dead: Fractions | None = None
    """dead_frac of ReLU-family modules."""
    saturated: Fractions | None = None
    """saturated_frac of bounded activations."""


def summarize(
    acts: pl.DataFrame,
    *,
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
) -> Activations:
    """The grids and fractions of one run, within ``budget`` (cells, lines and points).

    ``acts``: module, module_type, step, seq, std, zero_frac, dead_frac, saturated_frac;
    one row per module and sampled step.
    """
    order = first_order(acts, "module")
    keys = ["module", "module_type", "step"]
    maps = {}
    for value, log_scale in (("zero_frac", False), ("std", True)):
        points, markers = split_drawable(acts.select(*keys, value), value=value, positive=log_scale)
        maps[value] = grid(
            points, markers, value=value, order=order, log=log_scale, **bounds(budget)
        )
    return Activations(
        order,
        maps["zero_frac"],
        maps["std"],
        dead=_fractions(acts, "dead_frac", order, budget),
        saturated=_fractions(acts, "saturated_frac", order, budget),
    )


def _fractions(
    acts: pl.DataFrame, value: str, order: list[str], budget: Budget
) -> Fractions | None:
    """``value`` over steps for the modules that record it, the highest peaks first."""
    having = acts.filter(pl.col(value).is_not_null())
    if not having.height:
        return None
    peaks = having.group_by("module").agg(pl.col(value).fill_nan(None).max().alias("peak"))
    rank = {m: i for i, m in enumerate(order)}
    # Highest peak first (a NaN peak first of all: it is the loudest), then forward order.
    ranked = sorted(
        peaks.iter_rows(), key=lambda r: (-(r[1] if r[1] is not None else 2.0), rank[r[0]])
    )
    drawn = [m for m, _ in ranked[: min(MAX_FRACTION_LINES, budget.lines)]]
    rows = acts.filter(pl.col("module").is_in(drawn)).select("module", "step", value)
    s = series(
        rows,
        value=value,
        by=["module"],
        max_points=budget.series,
        # Half a per-parameter chart's points: a share moves slowly, 20 lines at most.
        budget=budget.line_points // 2,
        max_markers=budget.markers,
    )
    return Fractions(s, modules=peaks.height, drawn=[m for m in order if m in set(drawn)])
