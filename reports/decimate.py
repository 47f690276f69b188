"""Honest decimation of long series: per-bucket min/max, first/last and every non-finite point.

A report that inlines every point of a 100k-step run is megabytes of JSON and a
browser that stalls, yet averaging or striding would hide exactly what a reader
is looking for: a spike, a collapse to zero, the first NaN. So a series longer
than ``max_points`` is cut into buckets along x, and each bucket keeps the rows of
its smallest and largest finite value; the first and last row of the series and
every non-finite (NaN, +/-Inf, null) row are always kept. The caller reports
``drawn`` of ``total`` under the chart, so the reduction is never silent.

Pure Polars, no I/O: ``reports.data`` applies it to what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

MAX_POINTS = 2000
"""Series (one line of a chart) longer than this are decimated."""

_GROUP = "__group"
_I = "__i"
_N = "__n"
_BUCKET = "__bucket"


@dataclass(frozen=True)
class Decimated:
    """The rows kept, and how many rows there were: the chart says ``drawn of total``."""

    frame: pl.DataFrame
    total: int

    @property
    def drawn(self) -> int:
        return self.frame.height

    @property
    def reduced(self) -> bool:
        return self.drawn < self.total


def decimate(
    df: pl.DataFrame,
    *,
    x: str,
    y: str,
    by: Sequence[str] = (),
    max_points: int = MAX_POINTS,
) -> Decimated:
    """Keep at most about ``max_points`` rows per series (rows sharing ``by``), sorted by ``x``.

    Series of ``max_points`` rows or fewer are kept whole. Longer ones keep, per
    bucket of consecutive rows, the rows holding the bucket's finite min and max of
    ``y``, plus the series' first and last rows and all rows whose ``y`` is not
    finite, so a series can exceed ``max_points`` by its count of non-finite values.

    Example::

        >>> df = pl.DataFrame({"step": range(10_000), "value": [i % 7.0 for i in range(10_000)]})
        >>> out = decimate(df, x="step", y="value", max_points=100)
        >>> out.drawn <= 100, out.total
        (True, 10000)
    """
    if max_points < 4:
        raise ValueError(
            f"max_points must be at least 4 (first, last, a min and a max), got {max_points}"
        )
    total = df.height
    keys = list(by)
    frame = df.sort([*keys, x], maintain_order=True, nulls_last=True)
    if total == 0:
        return Decimated(frame, 0)
    # `over` needs at least one key; a literal column makes "one series" a group too.
    group = keys or [_GROUP]
    work = frame.with_columns(pl.lit(0).alias(_GROUP)) if not keys else frame
    work = work.with_columns(
        pl.int_range(pl.len()).over(group).alias(_I), pl.len().over(group).alias(_N)
    )
    if work[_N].max() <= max_points:  # type: ignore[operator]
        return Decimated(frame, total)

    # Two rows per bucket at most, leaving room for the first and last row.
    buckets = (max_points - 2) // 2
    finite = pl.col(y).is_finite().fill_null(False)
    in_bucket = [*group, _BUCKET]
    position = pl.int_range(pl.len()).over(in_bucket)
    # Non-finite rows can never win a min/max: they are kept by their own clause.
    low = pl.when(finite).then(pl.col(y)).otherwise(float("inf"))
    high = pl.when(finite).then(pl.col(y)).otherwise(float("-inf"))
    keep = (
        (pl.col(_N) <= max_points)
        | (pl.col(_I) == 0)
        | (pl.col(_I) == pl.col(_N) - 1)
        | ~finite
        | (position == low.arg_min().over(in_bucket))
        | (position == high.arg_max().over(in_bucket))
    )
    kept = (
        work.with_columns((pl.col(_I) * buckets // pl.col(_N)).alias(_BUCKET))
        .filter(keep)
        .select(frame.columns)
    )
    return Decimated(kept, total)


def note(drawn: int, total: int) -> str | None:
    """The sentence under a chart whose series were reduced, or None when all are drawn."""
    if drawn >= total:
        return None
    return (
        f"{drawn:,} of {total:,} points drawn "
        "(per-bucket min/max; first, last and every non-finite point kept)"
    )
