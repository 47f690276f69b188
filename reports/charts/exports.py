"""Export benchmark chart: latency against size on disk, one point per format and batch size.

The trade-off a deployment chooses from reads at a glance: down is faster, left is
smaller. Latency is on a log scale (a batch of 32 can be 10x slower than a batch
of 1, bf16 on a CPU 10x slower than eager); size is linear. A format that breaks
parity with eager (the ``export_parity`` rule) gets a red ring: fast is worth
nothing if it is wrong.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from reports.theme import HEIGHT, NONFINITE, WIDTH

BATCH_SHAPES = ("circle", "square", "triangle-up", "diamond", "cross", "triangle-down")


def latency_size_chart(*, points: pl.DataFrame, title: str = "latency vs size") -> alt.LayerChart:
    """``points``: format, batch (label), size_kb, p50_ms, p90_ms, throughput (text),
    parity (text), metric (text), flagged (bool). Only formats that ran are drawn."""
    base = alt.Chart(points)
    x = alt.X("size_kb:Q", title="size on disk (kB)", scale=alt.Scale(zero=False, padding=12))
    y = alt.Y(
        "p50_ms:Q",
        title="latency p50 (ms)",
        scale=alt.Scale(type="log", zero=False, nice=False, padding=12),
    )
    batches = list(dict.fromkeys(points["batch"].to_list()))
    tooltip = [
        alt.Tooltip("format:N", title="format"),
        alt.Tooltip("batch:N", title="batch size"),
        alt.Tooltip("p50_ms:Q", title="p50 ms", format=".3~g"),
        alt.Tooltip("p90_ms:Q", title="p90 ms", format=".3~g"),
        alt.Tooltip("throughput:N", title="samples/s"),
        alt.Tooltip("size_kb:Q", title="size kB", format=",.1f"),
        alt.Tooltip("parity:N", title="parity (max |diff|, rel)"),
        alt.Tooltip("metric:N", title="metric"),
    ]
    dots = base.mark_point(filled=True, size=90, opacity=0.85).encode(
        x=x,
        y=y,
        color=alt.Color("format:N", title="format", scale=alt.Scale(scheme="tableau10")),
        shape=alt.Shape(
            "batch:N",
            title="batch size",
            sort=batches,
            scale=alt.Scale(domain=batches, range=list(BATCH_SHAPES[: len(batches)])),
        ),
        tooltip=tooltip,
    )
    rings = (
        base.transform_filter(alt.datum.flagged)
        .mark_point(shape="circle", size=320, filled=False, strokeWidth=2, color=NONFINITE)
        .encode(x=x, y=y, tooltip=tooltip)
    )
    return alt.LayerChart(layer=[dots, rings]).properties(width=WIDTH, height=HEIGHT, title=title)
