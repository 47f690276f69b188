"""Per-parameter statistics shaped for the page: weight norms, update/weight ratios, grad grids.

The ``tensors`` stream has a row per parameter, kind (grad, weight, update) and
sampled step. Besides the gradient lines (``reports.data``) the page draws:

* the weight norm of every parameter over steps, and ``||update|| / ||weight||``
  against the healthy band of the ``update_ratio`` rule (a ratio far below it is
  a layer that does not learn, far above it one that is being overwritten);
* the gradient norm as a parameter x step heatmap on a log colour scale
  (``reports.heatmap`` bounds it), which stays readable for 60 parameters where
  60 lines are a tangle;
* the distribution of each gradient over time as bands (min..max, mean +/- std per
  bucket of steps), the histogram view of the seed, for a few parameters spread
  over the depth.

Pure Polars, no I/O. These functions reduce a run's rows as read; ``reports.data``
does the same reductions in the database, so that a long run's rows never reach
Python, and finishes them with the functions they share (``banded``,
``reports.heatmap.assemble``, ``reports.series.shaped``). The tests hold the two to
the same charts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.heatmap import Heatmap, bounds, grid
from reports.series import LABEL, SIG_DIGITS, Series, first_order, series, split_drawable

PER_PARAMETER_BUDGET = Budget().line_points
"""Points of a per-parameter line chart (gradient norm, weight norm, update ratio) across
its lines: a chart of 60 lines draws 100 per line, enough for a norm's drift and its
spikes (min/max per bucket), and a 100k-step run's report stays under 5 MB. The
gradient heatmap shows every parameter at every bucket besides."""

LINES = "parameters (those findings name, then spread over the depth)"
"""What a per-parameter chart's lines are, for the note when some are left out."""

MAX_BAND_PARAMS = 6
"""Parameters whose gradient distribution is drawn as bands: the first, the last, and
evenly spaced ones between them in depth order."""

BAND_BUCKETS = 100
"""Step buckets of a band chart: each keeps its min, max, and the mean +/- std envelope."""

NONFINITE = "NaN/Inf"
"""The label of a band's bucket with a non-finite statistic."""

_BUCKET = "__bucket"


@dataclass(frozen=True)
class Weights:
    """Weight norms and update/weight ratios of a run's parameters."""

    norms: Series | None
    """param, step, weight (markers: non-finite and zero)."""
    ratio: Series | None
    """param, step, ratio (markers: non-finite and zero)."""
    band: tuple[float, float]
    """The healthy ratio band, [low, high], shaded on the ratio chart."""


@dataclass(frozen=True)
class Bands:
    """A few parameters' gradient distributions per bucket of steps."""

    points: pl.DataFrame
    """param, step (first of the bucket), lo, hi, mean, std_lo, std_hi, n."""
    markers: pl.DataFrame
    """param, step, label: a bucket with a non-finite statistic anywhere in it."""
    params: list[str]
    """The parameters drawn, in depth order."""
    total_params: int
    steps: int
    """Sampled steps read (a bucket holds ``steps / BAND_BUCKETS`` of them)."""

    @property
    def note(self) -> str:
        parts = []
        if len(self.params) < self.total_params:
            parts.append(
                f"{len(self.params)} of {self.total_params} parameters, spread over the depth"
            )
        buckets = self.points["step"].n_unique() if self.points.height else 0
        if buckets < self.steps:
            parts.append(
                f"{self.steps:,} sampled steps in {buckets:,} buckets, each keeping its "
                "lowest min, highest max and the widest mean ± std"
            )
        return "; ".join(parts).capitalize() + "." if parts else ""


@dataclass(frozen=True)
class Gradients:
    """What the gradients section draws of a run: lines, global norm, heatmap and bands."""

    order: list[str]
    """Parameters by depth: their order (``seq``) within the first step they appear."""
    drawn: list[str]
    """The parameters with a line (all of them unless the budget's ``lines`` are fewer)."""
    lines: Series
    global_norm: Series
    heatmap: Heatmap
    bands: Bands | None


def gradients(grads: pl.DataFrame, budget: Budget, subjects: Iterable[str | None]) -> Gradients:
    """``grads``: param, step, seq, norm, mean, std, min, max (one row per parameter and step).

    ``subjects``: the run's finding subjects; the parameters they name get a line first.
    """
    order = first_order(grads, "param")
    drawn = drawn_params(order, named_params(subjects, order), budget.lines)
    return Gradients(
        order,
        drawn,
        per_parameter(grads.select("param", "step", "norm"), "norm", budget, drawn),
        series(
            global_norm(grads),
            value="norm",
            positive=True,
            max_points=budget.series,
            max_markers=budget.markers,
        ),
        grad_heatmap(grads, order, budget=budget),
        grad_bands(grads, order, buckets=budget.band_buckets),
    )


def global_norm(grads: pl.DataFrame) -> pl.DataFrame:
    """The global gradient norm per step, over the parameters recorded at that step.

    A NaN or Inf in any parameter's norm makes the step's global norm NaN/Inf on
    purpose: it becomes a marker instead of vanishing from the line.
    """
    return (
        grads.group_by("step")
        .agg((pl.col("norm") ** 2).sum().sqrt().alias("norm"), pl.len().alias("params"))
        .sort("step")
    )


def weights(
    rows: pl.DataFrame,
    *,
    band: tuple[float, float],
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
    first: Sequence[str] = (),
) -> Weights | None:
    """``rows``: param, step, seq, weight, update (either may be null when not recorded).

    ``first``: the parameters drawn when there are more than ``budget.lines``.
    """
    if not rows.height:
        return None
    norms = rows.filter(pl.col("weight").is_not_null()).select("param", "step", "weight")
    ratio = rows.filter(pl.col("weight").is_not_null() & pl.col("update").is_not_null())
    ratio = ratio.select("param", "step", (pl.col("update") / pl.col("weight")).alias("ratio"))
    return Weights(
        per_parameter(norms, "weight", budget, first) if norms.height else None,
        per_parameter(ratio, "ratio", budget, first) if ratio.height else None,
        band,
    )


def per_parameter(rows: pl.DataFrame, value: str, budget: Budget, first: Sequence[str]) -> Series:
    """One line per parameter of ``value`` (log scale: values <= 0 are markers)."""
    return series(
        rows,
        value=value,
        by=["param"],
        positive=True,
        max_points=budget.series,
        budget=budget.line_points,
        max_lines=budget.lines,
        first=first,
        line_kind=LINES,
        max_markers=budget.markers,
    )


def drawn_params(order: Sequence[str], named: Iterable[str], n: int) -> list[str]:
    """``n`` parameters of ``order`` for the line charts: those ``named``, then spread in depth."""
    first = [p for p in order if p in set(named)][:n]
    rest = [p for p in order if p not in set(first)]
    return first + spread(rest, n - len(first)) if n > len(first) else first


def named_params(subjects: Iterable[str | None], order: Sequence[str]) -> set[str]:
    """The parameters that finding subjects name (``fc.weight``, ``grad of fc.weight``)."""
    known = set(order)
    found = {s.partition(" of ")[2] or s for s in subjects if s}
    return found & known


def grad_heatmap(
    grads: pl.DataFrame,
    order: Sequence[str],
    *,
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
) -> Heatmap:
    """The gradient norm per parameter (rows, input side on top) and step bucket, log colour."""
    rows = grads.select(
        pl.col("param").alias("module"), pl.lit("parameter").alias("module_type"), "step", "norm"
    )
    points, markers = split_drawable(rows, value="norm", positive=True)
    return grid(points, markers, value="norm", order=order, log=True, **bounds(budget))


def spread(order: Sequence[str], n: int = MAX_BAND_PARAMS) -> list[str]:
    """``n`` of ``order`` evenly spaced, the first and last included."""
    if len(order) <= n:
        return list(order)
    if n <= 1:
        return list(order[:n])
    picks = sorted({round(i * (len(order) - 1) / (n - 1)) for i in range(n)})
    return [order[i] for i in picks]


def grad_bands(
    grads: pl.DataFrame, order: Sequence[str], *, buckets: int = BAND_BUCKETS
) -> Bands | None:
    """Min..max and mean +/- std of a few parameters' gradients per bucket of sampled steps.

    ``grads``: param, step, mean, std, min, max. A bucket with a NaN/Inf in any of its
    statistics becomes a marker (the band would otherwise end silently there).
    """
    shown = spread(order)
    rows = grads.filter(pl.col("param").is_in(shown)).select(
        "param", "step", "mean", "std", "min", "max"
    )
    if not rows.height:
        return None
    steps = rows["step"].unique().sort()
    n = steps.len()
    buckets = min(buckets, n)
    ranks = pl.int_range(n, eager=True, dtype=pl.Int64)
    index = pl.DataFrame({"step": steps, _BUCKET: ranks * buckets // max(1, n)})
    rows = rows.join(index, on="step")
    stats = ("mean", "std", "min", "max")
    finite = pl.all_horizontal(pl.col(c).is_finite().fill_null(False) for c in stats)
    first = rows.group_by("param", _BUCKET).agg(pl.col("step").min())
    bad = rows.filter(~finite).group_by("param", _BUCKET).agg().join(first, on=["param", _BUCKET])
    good = rows.filter(finite).join(bad.select("param", _BUCKET), on=["param", _BUCKET], how="anti")
    points = good.group_by("param", _BUCKET).agg(
        pl.col("step").min(),
        pl.col("min").min().alias("lo"),
        pl.col("max").max().alias("hi"),
        pl.col("mean").mean(),
        (pl.col("mean") - pl.col("std")).min().alias("std_lo"),
        (pl.col("mean") + pl.col("std")).max().alias("std_hi"),
        pl.len().alias("n"),
    )
    return banded(points, bad, shown=shown, total_params=len(order), steps=n)


def banded(
    points: pl.DataFrame, bad: pl.DataFrame, *, shown: list[str], total_params: int, steps: int
) -> Bands:
    """The ``Bands`` of bucketed statistics, however they were computed (``grad_bands``,
    or the database in ``reports.data``).

    ``points``: param, step (the bucket's first), lo, hi, mean, std_lo, std_hi, n.
    ``bad``: param, step of the buckets with a non-finite statistic.
    """
    values = ("lo", "hi", "mean", "std_lo", "std_hi")
    columns = ["param", "step", *values, "n"]
    return Bands(
        points.select(columns)
        .with_columns(pl.col(values).round_sig_figs(SIG_DIGITS))
        .sort("param", "step"),
        bad.select("param", "step", pl.lit(NONFINITE).alias(LABEL)).sort("param", "step"),
        shown,
        total_params,
        steps,
    )
