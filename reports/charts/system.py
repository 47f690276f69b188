"""System charts: where a step's time goes (waiting for data vs computing), and throughput.

Two lines, not a stacked area: the series are decimated on their own, so their
kept steps differ, and a stack would add values of different steps.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from reports.charts.steps import nonfinite_layer, step_x
from reports.system import PARTS
from reports.theme import HEIGHT, SMALL_HEIGHT, WIDTH

PART_COLORS = ("#e45756", "#4c78a8")
"""data wait in red (the bottleneck to look for), compute in blue."""


def step_time_chart(
    *, points: pl.DataFrame, markers: pl.DataFrame, width: int = WIDTH, height: int = HEIGHT
) -> alt.LayerChart:
    """``points``: part, step, seconds. ``markers``: part, step, label."""
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.2)
        .encode(
            x=step_x(),
            y=alt.Y("seconds:Q", title="seconds per step"),
            color=alt.Color(
                "part:N", title="step time", scale=alt.Scale(domain=PARTS, range=PART_COLORS)
            ),
            tooltip=[
                alt.Tooltip("part:N", title="part"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("seconds:Q", title="seconds", format=".4~g"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[alt.Tooltip("part:N", title="part")]))
    return alt.LayerChart(layer=layers).properties(
        title="step time: data wait and compute", width=width, height=height
    )


def throughput_chart(
    *, points: pl.DataFrame, markers: pl.DataFrame, width: int = WIDTH, height: int = SMALL_HEIGHT
) -> alt.LayerChart:
    """``points``: step, samples_per_s. ``markers``: step, label."""
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.2, color="#333")
        .encode(
            x=step_x(),
            y=alt.Y("samples_per_s:Q", title="samples/s"),
            tooltip=[
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("samples_per_s:Q", title="samples/s", format=",.0f"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[]))
    return alt.LayerChart(layer=layers).properties(title="throughput", width=width, height=height)
