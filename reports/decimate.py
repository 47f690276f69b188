"""Honest decimation of long series: per-bucket min/max, first/last and every non-finite point.

A report that inlines every point of a 100k-step run is megabytes of JSON and a
browser that stalls, yet averaging or striding would hide exactly what a reader
is looking for: a spike, a collapse to zero, the first NaN. So a series longer
than ``max_points`` is cut into buckets along x, and each bucket keeps the rows of
its smallest and largest finite value; the first and last row of the series and
every non-finite (NaN, +/-Inf, null) row are always kept. The caller reports
``drawn`` of ``total`` under the chart, so the reduction is never silent.

The same reduction comes in two forms: ``decimate`` on a Polars frame, and
``decimate_sql``, the text of a query that keeps exactly the same rows, for
``reports.data`` to run in the database: a run of 100k steps x 60 parameters then
sends the page a few thousand rows instead of six million. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

MAX_POINTS = 2000
"""Series (one line of a chart) longer than this are decimated."""

_GROUP = "__group"
_I = "__i"
_N = "__n"
_BUCKET = "__bucket"

ROWS = "decimate_rows"
"""Column of ``decimate_sql``'s result: the rows of the row's series before decimation."""

CUT = "decimate_cut"
"""Column of ``decimate_sql``'s result: the series' non-finite rows beyond ``max_nonfinite``."""


@dataclass(frozen=True)
class Decimated:
    """The rows kept, and how many rows there were: the chart says ``drawn of total``."""

    frame: pl.DataFrame
    total: int
    cut: int = 0
    """Non-finite rows that were counted but not returned (``decimate_sql``'s
    ``max_nonfinite``): a chart marks only the first few anyway, and counts the rest."""

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
    _check(max_points)
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


def decimate_sql(
    source: str,
    *,
    x: str,
    y: str,
    by: Sequence[str] = (),
    ties: Sequence[str] = (),
    max_points: int | str = MAX_POINTS,
    max_nonfinite: int | None = None,
) -> tuple[str, dict[str, int]]:
    """``decimate`` as a query over the rows of ``source`` (a SELECT), and its parameters.

    The query keeps the rows ``decimate`` keeps, in its order, with the source's
    columns followed by ``ROWS`` and ``CUT`` (per series: its rows before decimation,
    and its non-finite rows left out); ``decimated`` turns the result into a
    ``Decimated``. Run it with the source's own parameters merged with the returned ones.

    ``ties``: columns that order the rows of equal ``x`` as the frame ``decimate`` would
    get them (``seq``); without them such rows come in no particular order.
    ``max_points``: the same for every series, or the name of a source column holding
    each series' own (constant within a series). ``max_nonfinite``: keep only each
    series' first that many non-finite rows (by ``x``), counting the rest in ``CUT``;
    a chart marks only its first few by step, and a run that diverged early is NaN
    for most of its length.

    Example::

        >>> sql, params = decimate_sql("SELECT * FROM t", x="step", y="value", max_points=100)
        >>> sorted(params)
        ['decimate_points']
    """
    names = [x, y, *by, *ties] + ([max_points] if isinstance(max_points, str) else [])
    for name in names:
        if not _IDENTIFIER.match(name) or name.startswith("decimate_"):
            raise ValueError(f"not a plain column name for decimate_sql: {name!r}")
    params: dict[str, int] = {}
    if isinstance(max_points, str):
        points = _quoted(max_points)
    else:
        _check(max_points)
        points, params["decimate_points"] = "$decimate_points", max_points
    keys = [_quoted(k) for k in by]
    partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
    order = ", ".join(f"{_quoted(c)} NULLS LAST" for c in [x, *ties])
    value = _quoted(y)
    same_series = "".join(f"n.{k} IS NOT DISTINCT FROM k.{k} AND " for k in keys)
    select_keys = "".join(f"{k}, " for k in keys)
    if max_nonfinite is None:
        marked, cut, cuts = "", "0", ""
    elif max_nonfinite < 1:
        raise ValueError(f"max_nonfinite must be at least 1 (or None for all), got {max_nonfinite}")
    else:
        params["decimate_nonfinite"] = max_nonfinite
        marked = (
            f"QUALIFY row_number() OVER ({partition} ORDER BY decimate_i) <= $decimate_nonfinite"
        )
        cut = "coalesce(k.decimate_cut, 0)"
        cuts = f"""
LEFT JOIN (
    SELECT {select_keys}
        greatest(any_value(decimate_bad) - $decimate_nonfinite, 0) AS decimate_cut
    FROM decimate_marked {f"GROUP BY {', '.join(keys)}" if keys else ""}
) k ON {same_series}true"""
    # The rows are numbered in one sort; the extremes of each bucket come from a hash
    # aggregate, first occurrence on ties ((y, i) orders them). DuckDB sorts NaN above
    # +Inf and isfinite(NULL) is NULL, so a non-finite y never reaches the ranking. A
    # series is joined on its keys (nulls equal: ``decimate`` groups them so), not on a
    # struct of them: partitioning by a struct costs DuckDB half as much again.
    sql = f"""
WITH decimate_source AS (
{source}
), decimate_numbered AS (
    SELECT *,
        row_number() OVER ({partition} ORDER BY {order}) - 1 AS decimate_i,
        count(*) OVER ({partition}) AS {ROWS},
        coalesce(isfinite({value}), false) AS decimate_finite
    FROM decimate_source
), decimate_extremes AS (
    SELECT {select_keys}
        arg_min(decimate_i, ({value}, decimate_i)) AS decimate_low,
        arg_max(decimate_i, ({value}, -decimate_i)) AS decimate_high
    FROM decimate_numbered
    WHERE decimate_finite AND {ROWS} > {points}
    GROUP BY {select_keys}decimate_i * (({points} - 2) // 2) // {ROWS}
), decimate_marked AS (
    SELECT {select_keys}decimate_i, count(*) OVER ({partition}) AS decimate_bad
    FROM decimate_numbered
    WHERE NOT decimate_finite
    {marked}
), decimate_kept AS (
    SELECT {select_keys}decimate_i FROM decimate_numbered
    WHERE decimate_finite
        AND ({ROWS} <= {points} OR decimate_i = 0 OR decimate_i = {ROWS} - 1)
    UNION ALL
    SELECT {select_keys}decimate_low FROM decimate_extremes
    UNION ALL
    SELECT {select_keys}decimate_high FROM decimate_extremes
    UNION ALL
    SELECT {select_keys}decimate_i FROM decimate_marked
)
SELECT n.* EXCLUDE (decimate_i, decimate_finite), {cut} AS {CUT}
FROM (
    SELECT * FROM decimate_numbered n
    SEMI JOIN decimate_kept k ON {same_series}n.decimate_i = k.decimate_i
) n{cuts}
ORDER BY {"".join(f"n.{k} NULLS LAST, " for k in keys)}n.decimate_i
"""
    return sql, params


def decimated(
    frame: pl.DataFrame, *, by: Sequence[str] = (), columns: Sequence[str] | None = None
) -> Decimated:
    """The rows of a ``decimate_sql`` result (series sharing ``by``) and their counts.

    ``columns``: those to keep (default: all but ``ROWS`` and ``CUT``).
    """
    per_series = frame.unique(subset=list(by)) if by else frame.head(1)
    total, cut = (int(per_series[c].sum()) for c in (ROWS, CUT))
    kept = frame.select(columns) if columns is not None else frame.drop(ROWS, CUT)
    return Decimated(kept, total, cut)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _quoted(name: str) -> str:
    return f'"{name}"'


def _check(max_points: int) -> None:
    if max_points < 4:
        raise ValueError(
            f"max_points must be at least 4 (first, last, a min and a max), got {max_points}"
        )


def note(drawn: int, total: int) -> str | None:
    """The sentence under a chart whose series were reduced, or None when all are drawn."""
    if drawn >= total:
        return None
    return (
        f"{drawn:,} of {total:,} points drawn "
        "(per-bucket min/max; first, last and every non-finite point kept)"
    )
