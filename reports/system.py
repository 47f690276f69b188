"""A run's step timing shaped for the page: data wait vs compute per step, and throughput.

The ``system`` stream has a row per optimizer step, its timing columns null on a step
that could not be timed (those rows are left out here). A step's time is split into the
wait for the next batch (``data_time_s``) and the rest (``compute_time_s``): a
data wait that is a large share of the step is the data-loading bottleneck of
the seed's table, and reads as the lower band growing. Both parts are decimated
like any series (``reports.series``), so a spike of one slow step survives.

Pure Polars, no I/O: ``reports.data`` reads the rows and calls ``summarize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reports.budget import Budget
from reports.series import Series, series

PARTS = ("data wait", "compute")
"""The two parts of a step, bottom to top."""


@dataclass(frozen=True)
class System:
    time: Series | None
    """part, step, seconds: one line per part of the step."""
    throughput: Series | None
    """step, samples_per_s."""


def summarize(
    rows: pl.DataFrame,
    *,
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
) -> System | None:
    """``rows``: step, step_time_s, data_time_s, compute_time_s, samples_per_s (others ignored)."""
    if not rows.height:
        return None
    # compute_time_s is written by the collector; an importer may leave it out.
    compute = pl.coalesce(
        pl.col("compute_time_s"), pl.col("step_time_s") - pl.col("data_time_s")
    ).alias("seconds")
    parts = pl.concat(
        [
            rows.select(
                pl.lit(PARTS[0]).alias("part"), "step", pl.col("data_time_s").alias("seconds")
            ),
            rows.select(pl.lit(PARTS[1]).alias("part"), "step", compute),
        ]
    ).filter(pl.col("seconds").is_not_null())
    rate = rows.select("step", "samples_per_s").filter(pl.col("samples_per_s").is_not_null())
    n, marks = budget.series, budget.markers
    return System(
        series(parts, value="seconds", by=["part"], max_points=n, max_markers=marks)
        if parts.height
        else None,
        series(rate, value="samples_per_s", max_points=n, max_markers=marks)
        if rate.height
        else None,
    )
