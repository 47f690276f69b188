"""A run's peak memory over steps, against what it is measured against, for the page.

The collector reads the peak (CUDA memory allocated on a GPU, the process's peak RSS
on the CPU) at most once a second into ``system.max_memory_bytes``, null on the other
rows; ``run_started`` records ``memory_total_bytes`` (the device's memory, or the
machine's RAM) and the ``device``. The rule ``memory_pressure`` compares the two at
``SHARE`` (90 %): the chart draws the peak in GiB with the total and that share as
rules, so a reader sees how close the run came and when. A line per rank: with data
parallelism one rank (the one that gathers, or holds the larger shard) may peak above
the others. Long runs are decimated in the database (``reports.decimate``).

``read`` runs the queries (``reports.queries``) and returns values; nothing is drawn here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from reports.budget import Budget
from reports.decimate import decimate_sql, decimated
from reports.queries import query
from reports.series import Series, points_per_line, shaped

if TYPE_CHECKING:
    from analysis import Store

SHARE = 0.9
"""The share of the total that ``memory_pressure`` reports (its ``min_share``)."""

MAX_RANKS = 8
"""Ranks drawn at most: those with the highest peaks."""

_MEMORY = query("memory")
_TOTAL = query("memory_total")
_GIB = 2**30


@dataclass(frozen=True)
class Memory:
    series: Series
    """rank, step, gib: the peak so far, a line per rank."""
    total_gib: float | None
    """What the peak is measured against, in GiB; None for runs recorded before it was."""
    device: str | None
    """The run's device as recorded (``cuda:0``, ``cpu``)."""

    @property
    def peak_gib(self) -> float:
        return float(self.series.points["gib"].max() or 0.0)  # type: ignore[arg-type]

    @property
    def against(self) -> str:
        """What the total is: the device's memory or the machine's RAM."""
        if self.device and self.device.startswith("cuda"):
            return f"{self.device} memory"
        return "host RAM"

    @property
    def limits(self) -> pl.DataFrame:
        """limit (``total``, ``share``), label, gib: the total and ``SHARE`` of it, the rules
        of the chart (none without a total)."""
        if self.total_gib is None or self.total_gib <= 0:
            return pl.DataFrame(schema={"limit": pl.String, "label": pl.String, "gib": pl.Float64})
        share = SHARE * self.total_gib
        return pl.DataFrame(
            {
                "limit": ["total", "share"],
                "label": [
                    f"{self.against}: {self.total_gib:.2f} GiB",
                    f"{SHARE:.0%} (memory_pressure): {share:.2f} GiB",
                ],
                "gib": [round(self.total_gib, 4), round(share, 4)],
            }
        )

    @property
    def subtitle(self) -> str:
        """``peak 3.10 GiB of 80.00 GiB cuda:0 memory (4 %)``."""
        if self.total_gib is None or self.total_gib <= 0:
            return f"peak {self.peak_gib:.2f} GiB ({self.device or 'device not recorded'})"
        share = 100 * self.peak_gib / self.total_gib
        return (
            f"peak {self.peak_gib:.2f} GiB of {self.total_gib:.2f} GiB {self.against} "
            f"({share:.0f} %)"
        )


def read(store: Store, run_id: str, budget: Budget) -> Memory | None:
    """The run's peak memory, or None when it recorded none."""
    lines = min(MAX_RANKS, budget.lines)
    sql, params = decimate_sql(
        _MEMORY,
        x="step",
        y="gib",
        by=["rank"],
        ties=["seq"],
        max_points=points_per_line(lines, max_points=budget.series, budget=budget.line_points),
    )
    rows = store.sql(sql, params | {"run_id": run_id, "max_ranks": lines})
    if not rows.height:
        return None
    ranks = int(rows["ranks"][0])
    s = shaped(
        decimated(rows, by=["rank"], columns=["rank", "step", "gib"]),
        value="gib",
        lines=rows["rank"].n_unique(),
        lines_total=ranks,
        line_kind="ranks (those with the highest peaks)",
        max_markers=budget.markers,
    )
    total, device = None, None
    for bytes_, name in store.sql(_TOTAL, {"run_id": run_id}).iter_rows():
        total = bytes_ / _GIB if bytes_ else None
        device = str(name) if name is not None else None
    return Memory(s, total, device)
