"""System charts: where a step's time goes (waiting for data vs computing), throughput,
and peak memory against the device's (or the machine's) total.

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


MEMORY_COLOR = "#333"
LIMIT_COLOR = "#c62828"
"""The total and its 90 % share: the red of error findings, the rule's threshold."""


def memory_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    limits: pl.DataFrame,
    subtitle: str,
    width: int = WIDTH,
    height: int = SMALL_HEIGHT,
) -> alt.LayerChart:
    """``points``: rank, step, gib (the peak so far). ``markers``: rank, step, label.

    ``limits``: limit (``total`` or ``share``), label, gib: horizontal rules (the total,
    and the share ``memory_pressure`` reports), each labelled; empty when the total was
    not recorded. The value axis starts at zero and reaches the total, so the line's
    height is its share of the device.
    """
    ranks = points["rank"].n_unique() if points.height else 0
    color = alt.Color("rank:N", title="rank") if ranks > 1 else alt.value(MEMORY_COLOR)
    y = alt.Y("gib:Q", title="peak memory (GiB)", scale=alt.Scale(zero=True))
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.5, interpolate="step-after", point=points.height <= 60)
        .encode(
            x=step_x(),
            y=y,
            color=color,
            tooltip=[
                alt.Tooltip("rank:N", title="rank"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("gib:Q", title="peak GiB", format=".3~f"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if limits.height:
        rules = alt.Chart(limits).encode(y=alt.Y("gib:Q"))
        layers.append(
            rules.mark_rule(color=LIMIT_COLOR, strokeDash=[6, 4], strokeWidth=1.2).encode(
                tooltip=[
                    alt.Tooltip("label:N", title="limit"),
                    alt.Tooltip("gib:Q", title="GiB", format=".2f"),
                ]
            )
        )
        # The total's label above its rule, the share's below its own: they are close.
        for limit, dy in (("total", -6), ("share", 9)):
            layers.append(
                rules.transform_filter(alt.datum.limit == limit)
                .mark_text(align="left", dx=4, dy=dy, color=LIMIT_COLOR, fontSize=10)
                .encode(x=alt.value(0), text="label:N")
            )
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[alt.Tooltip("rank:N", title="rank")]))
    return alt.LayerChart(layer=layers).properties(
        title=alt.TitleParams("peak memory", subtitle=subtitle), width=width, height=height
    )
