"""A run's global gradient norm at every optimizer step: before clipping and as stepped with.

The collector writes a ``system`` row per optimizer step with ``grad_norm`` (the global
L2 norm at the end of backward, before any clipping), ``grad_norm_step`` (the norm the
optimizer stepped with, after clipping) and ``clip_ratio`` (their ratio when the step
was clipped, else null). With ``clip_grad_norm_`` the norm the optimizer sees is flat at
the threshold: only the pre-clip line shows how large the gradients were, and the two
lines apart show how often and how hard clipping acted.

When no step was clipped the two norms are the same number, so only the pre-clip line
is drawn. A store written before the columns existed, or a run without an optimizer,
has no ``grad_norm``: no chart. Both lines are decimated like any series
(``reports.series``, the run's ``budget.series`` points each), and a NaN/Inf norm or one
of 0 (off the log scale) becomes a red marker; a step where both norms cannot be drawn
is marked once, on the pre-clip line. The chart's subtitle counts the clipped steps
among those with both norms finite (a NaN gradient is never reported as clipped).

Pure Polars, no I/O: ``reports.data`` reads the rows and calls ``summarize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.series import Series, series

LINES = ("before clipping", "at the optimizer step")
"""The two lines, drawn in this order (the optimizer's on top)."""

SAME = 1e-6
"""Relative difference below which the two norms of a step are the same number."""


@dataclass(frozen=True)
class StepNorms:
    """The two lines, and how many steps were clipped."""

    series: Series
    """line, step, norm (markers: line, step, label)."""
    clipped: int
    """Steps with a ``clip_ratio``: the optimizer stepped with a smaller norm."""
    steps: int
    """Steps with both norms finite: those where clipping can be told (the denominator)."""

    @property
    def lines(self) -> list[str]:
        """The lines drawn: the pre-clip one, and the optimizer's when the two differ."""
        shown = self.series.points["line"].to_list() + self.series.markers["line"].to_list()
        return [line for line in LINES if line in set(shown)]

    @property
    def subtitle(self) -> str:
        if self.clipped:
            return f"clipped on {self.clipped:,} of {self.steps:,} steps"
        return f"not clipped on any of {self.steps:,} steps"


def summarize(
    rows: pl.DataFrame,
    *,
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
) -> StepNorms | None:
    """``rows``: step, grad_norm, grad_norm_step, clip_ratio (other columns are ignored).

    None when no step has a ``grad_norm``.
    """
    if "grad_norm" not in rows.columns:
        return None
    rows = rows.filter(pl.col("grad_norm").is_not_null())
    if not rows.height:
        return None
    pre, at = pl.col("grad_norm"), pl.col("grad_norm_step")
    both = rows.filter(at.is_not_null())
    clipped = both.filter(pl.col("clip_ratio").is_not_null()).height
    judged = both.filter(pre.is_finite() & at.is_finite()).height
    drawable_pre = pre.is_finite().fill_null(False) & (pre > 0)
    drawable_at = at.is_finite().fill_null(False) & (at > 0)
    differs = (at - pre).abs() > SAME * pl.max_horizontal(pre.abs(), at.abs())
    # Without clipping the optimizer's norm is the pre-clip one: a second line on top of
    # the first would say nothing. A step whose norms are both NaN/Inf/0 is marked once.
    changed = both.filter(
        pl.col("clip_ratio").is_not_null() | (drawable_pre & drawable_at & differs)
    ).height
    frames = [rows.select(pl.lit(LINES[0]).alias("line"), "step", pre.alias("norm"))]
    if changed:
        stepped = both.filter(drawable_at | drawable_pre)
        frames.append(stepped.select(pl.lit(LINES[1]).alias("line"), "step", at.alias("norm")))
    lines = pl.concat(frames)
    drawn = series(
        lines,
        value="norm",
        by=["line"],
        positive=True,
        max_points=budget.series,
        max_lines=len(LINES),
        line_kind="norms",
        max_markers=budget.markers,
    )
    return StepNorms(drawn, clipped, judged)
