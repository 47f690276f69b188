"""A chart's series: drawable points, markers for the values a chart cannot draw, and counts.

Vega-Lite drops NaN and null silently and JSON cannot carry NaN/Inf at all, so a
naive chart shows a silent gap exactly where a reader should look. ``series``
decimates a frame per series (``reports.decimate``) and cuts such rows out into a
*marker* frame with a ``label`` ("NaN", "+Inf", "-Inf", "null", and "0" on a log
scale); the charts draw the markers in red.

Pure Polars, no I/O: ``reports.data`` applies it to what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.decimate import MAX_POINTS, Decimated, decimate, note

LABEL = "label"
"""Column of a marker frame: why the value could not be drawn."""

SIG_DIGITS = 6
"""Values are drawn with this many significant digits (decimation picks on full precision)."""

CHART_BUDGET = 20_000
"""Points one chart may draw across its series before each series gets fewer than MAX_POINTS."""

MIN_PER_SERIES = 50
"""Floor of the per-series share of a chart's budget: a line keeps its shape at this many
(24 buckets of min and max). A run's share of a crowded page reaches it."""

MAX_LINES = Budget().lines
"""Series one chart draws at most, by default (a run's share: ``reports.budget``)."""

MAX_MARKERS = Budget().markers
"""Markers one chart draws at most, the first ones by step, by default."""


@dataclass(frozen=True)
class Series:
    """One chart's worth of data: drawable points, markers for the rest, and counts.

    ``points`` holds the rows whose value can be drawn; ``markers`` holds the
    other rows with the value replaced by ``label``. ``drawn`` counts both after
    decimation, ``total`` counts the rows read.
    """

    points: pl.DataFrame
    markers: pl.DataFrame
    drawn: int
    total: int
    lines: int = 1
    """Series drawn; ``lines_total`` were read."""
    lines_total: int = 1
    line_kind: str = "series"
    """What the series are, and which are drawn when some are not: ``parameters (...)``."""
    marked: int = 0
    """Rows that could not be drawn (``markers`` keeps the first ``MAX_MARKERS``)."""

    @property
    def note(self) -> str | None:
        """The sentences under a reduced chart, or None when every line and point is drawn."""
        parts = []
        if self.lines < self.lines_total:
            parts.append(f"Lines for {self.lines} of {self.lines_total:,} {self.line_kind}.")
        points = note(self.drawn, self.total)
        if points:
            parts.append(points[0].upper() + points[1:] + ".")
        return " ".join(parts)[:-1] if parts else None


def series(
    df: pl.DataFrame,
    *,
    value: str,
    by: Sequence[str] = (),
    positive: bool = False,
    max_points: int = MAX_POINTS,
    budget: int = CHART_BUDGET,
    max_lines: int = MAX_LINES,
    first: Sequence[str] = (),
    line_kind: str = "series",
    max_markers: int = MAX_MARKERS,
) -> Series:
    """Decimate ``df`` per series (rows sharing ``by``, ordered by ``step``), then cut out markers.

    ``positive`` is for log-scale charts: values <= 0 cannot be drawn there, so they
    become markers too (a gradient norm of exactly 0 is a finding, not a gap).
    ``budget`` is the points the chart's series share (each keeps ``MIN_PER_SERIES``).
    At most ``max_lines`` series are drawn: the values of ``by[0]`` in ``first``, then
    the others in order of appearance; ``line_kind`` names them for the note ("parameters
    (those findings name first)"). Markers beyond ``max_markers`` are counted, not drawn.

    ``reports.data`` does the same in the database for long runs: ``pick_lines`` and
    ``points_per_line`` plan the query, and ``shaped`` finishes what it returns.
    """
    keys = list(by)
    lines_total = df.select(keys).n_unique() if keys and df.height else 1
    if lines_total > max_lines:
        seen = df.select(keys).unique(maintain_order=True)
        df = df.join(
            pick_lines(seen, first, max_lines),
            on=keys,
            how="semi",
            maintain_order="left",
            nulls_equal=True,
        )
    n_series = min(lines_total, max_lines)
    per_series = points_per_line(n_series, max_points=max_points, budget=budget)
    reduced = decimate(df, x="step", y=value, by=keys, max_points=per_series)
    return shaped(
        reduced,
        value=value,
        positive=positive,
        lines=n_series,
        lines_total=lines_total,
        line_kind=line_kind,
        max_markers=max_markers,
    )


def points_per_line(lines: int, *, max_points: int = MAX_POINTS, budget: int = CHART_BUDGET) -> int:
    """Points of each of a chart's ``lines`` series: a share of ``budget``, at most ``max_points``.

    A chart of many series (a deep model's parameters) shares one budget, so a chart
    stays a few MB at most; a single series still gets ``max_points``.
    """
    return min(max_points, max(MIN_PER_SERIES, budget // max(1, lines)))


def pick_lines(seen: pl.DataFrame, first: Sequence[str], n: int) -> pl.DataFrame:
    """``n`` of the series ``seen`` (their keys, in order of appearance): those whose first
    key is in ``first``, then the others in order."""
    wanted = pl.col(seen.columns[0]).is_in(list(first)) if first else pl.lit(False)
    return pl.concat([seen.filter(wanted), seen.filter(~wanted)]).head(n)


def shaped(
    reduced: Decimated,
    *,
    value: str,
    positive: bool = False,
    lines: int = 1,
    lines_total: int = 1,
    line_kind: str = "series",
    max_markers: int = MAX_MARKERS,
) -> Series:
    """A chart's ``Series`` from its decimated rows: markers cut out (the first
    ``max_markers`` by step drawn, all counted), values rounded for the page."""
    points, markers = split_drawable(reduced.frame, value=value, positive=positive)
    marked = markers.height + reduced.cut
    # A series that diverged is NaN from there on: its first marks say where and what.
    markers = markers.sort("step", maintain_order=True).head(max_markers)
    # 17-digit floats are most of a report's bytes; 6 significant digits are finer
    # than any axis or tooltip (4 digits) shows, and halve the size.
    points = points.with_columns(pl.col(value).round_sig_figs(SIG_DIGITS))
    return Series(
        points,
        markers,
        points.height + markers.height,
        reduced.total,
        lines=lines,
        lines_total=lines_total,
        line_kind=line_kind,
        marked=marked,
    )


def split_drawable(
    df: pl.DataFrame, *, value: str, positive: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows Vega-Lite can draw, and the others as markers with ``value`` replaced by a label.

    Vega-Lite drops NaN and null silently (and JSON cannot even carry NaN/Inf), so
    the non-finite rows must leave the data before the chart sees them.
    """
    v = pl.col(value)
    drawable = v.is_finite().fill_null(False)
    if positive:
        drawable = drawable & (v > 0)
    label = (
        pl.when(v.is_null())
        .then(pl.lit("null"))
        .when(v.is_nan())
        .then(pl.lit("NaN"))
        .when(v.is_infinite() & (v > 0))
        .then(pl.lit("+Inf"))
        .when(v.is_infinite())
        .then(pl.lit("-Inf"))
        .when(v == 0)
        .then(pl.lit("0 (off the log scale)"))
        .otherwise(pl.lit("negative (off the log scale)"))
    )
    markers = df.filter(~drawable).with_columns(label.alias(LABEL)).drop(value)
    return df.filter(drawable), markers


def first_order(df: pl.DataFrame, key: str) -> list[str]:
    """Values of ``key`` by the first step they appear in, then ``seq`` within that step.

    Parameters are written in registration order and activations in forward order,
    so this is depth order for both.
    """
    firsts = df.group_by(key).agg(
        pl.col("step").min().alias("first_step"),
        pl.col("seq").sort_by("step", "seq").first().alias("first_seq"),
    )
    return [str(p) for p in firsts.sort("first_step", "first_seq")[key].to_list()]
