"""Activation charts: module x step heatmaps of one statistic, and dead/saturated unit fractions.

A heatmap reads top to bottom in forward order (the input side first), so a
problem that starts in one layer and spreads downstream reads as a wedge. The
zero fraction has a fixed 0..1 colour scale (comparable between runs); the std a
log scale, because vanishing and exploding activations are stories of orders of
magnitude. Cells whose value cannot be coloured (NaN/Inf, and a std of 0, the
signature of a constant, e.g. dead, output) are filled red with the reason in the
tooltip. ``reports.heatmap`` has already bucketed the steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.charts.codes import BY_CODE, CODE, coded
from reports.charts.steps import nonfinite_layer, step_x
from reports.theme import DEPTH_SCHEME, HEIGHT, NONFINITE, ROW_HEIGHT, WIDTH

ZERO_RANGE = ["#f7fbff", "#08306b"]
"""Zero fraction 0 (white) to 1 (dark blue); red stays for what cannot be drawn."""

SPARSE = 60
"""Fraction series with at most this many points per module get a dot per point."""

_FORMAT = ".4~g"


def heatmap_chart(
    *,
    cells: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    value: str,
    title: str,
    log: bool = False,
    width: int = WIDTH,
    row_height: int = ROW_HEIGHT,
    max_height: int | None = None,
) -> alt.LayerChart:
    """``value`` per module (rows, in ``order``) and step bucket (columns), as coloured cells.

    A row is ``row_height`` px tall, fewer when ``max_height`` caps the chart (the
    module labels then thin out: the tooltip names every cell's module).

    ``cells``: module, module_type, step (first of the bucket), value, and when steps
    were bucketed steps (text), lo, hi, n. ``markers``: module, module_type, step,
    label (and steps, n when bucketed).
    """
    x = alt.X("step:O", title="step", axis=alt.Axis(labelOverlap=True, labelAngle=0))
    y = alt.Y(
        "module:N", sort=BY_CODE, title=None, axis=alt.Axis(labelLimit=260, labelOverlap=True)
    )
    bucketed = "steps" in cells.columns or "steps" in markers.columns
    ident = [
        alt.Tooltip("module:N", title="module"),
        alt.Tooltip("module_type:N", title="type"),
        alt.Tooltip("steps:N", title="steps") if bucketed else alt.Tooltip("step:O", title="step"),
    ]
    spread = [
        alt.Tooltip("lo:Q", title="min", format=_FORMAT),
        alt.Tooltip("hi:Q", title="max", format=_FORMAT),
        alt.Tooltip("n:Q", title="sampled steps"),
    ]
    scale = (
        alt.Scale(type="log", scheme="viridis")
        if log
        else alt.Scale(domain=[0, 1], range=ZERO_RANGE)
    )
    (frame, marked), names = coded(
        cells, "module", also=["module_type"], order=order, more=[markers]
    )
    colored = (
        alt.Chart(frame)
        .transform_lookup(lookup=CODE, from_=names)
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color(f"{value}:Q", title=value, scale=scale),
            tooltip=[
                *ident,
                alt.Tooltip(f"{value}:Q", title=value, format=_FORMAT),
                *(spread if bucketed else []),
            ],
        )
    )
    layers: list[alt.Chart] = [colored]
    if markers.height:
        layers.append(
            alt.Chart(marked)
            .transform_lookup(lookup=CODE, from_=names)
            .mark_rect(color=NONFINITE, opacity=0.9)
            .encode(x=x, y=y, tooltip=[*ident, alt.Tooltip("label:N", title=value)])
        )
    height = max(3, len(order)) * row_height
    if max_height is not None:
        height = min(height, max_height)
    return alt.LayerChart(layer=layers).properties(title=title, width=width, height=height)


def fraction_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    value: str,
    title: str,
    y_title: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """A share (0..1) per module over ``step``, one line per module coloured by depth.

    ``points``: module, step, ``value``. ``markers``: module, step, label.
    """
    color = alt.Color(
        "module:N",
        sort=BY_CODE,
        scale=alt.Scale(scheme=DEPTH_SCHEME),
        legend=alt.Legend(title="module (by depth)", symbolLimit=40),
    )
    per_module = points.group_by("module").len()["len"].max() if points.height else 0
    (frame,), names = coded(points, "module", order=order)
    line = (
        alt.Chart(frame)
        .transform_lookup(lookup=CODE, from_=names)
        .mark_line(strokeWidth=1.5, point=bool(per_module and per_module <= SPARSE))  # type: ignore[operator]
        .encode(
            x=step_x(),
            y=alt.Y(f"{value}:Q", title=y_title, scale=alt.Scale(domain=[0, 1])),
            color=color,
            tooltip=[
                alt.Tooltip("module:N", title="module"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip(f"{value}:Q", title=value, format=".3~f"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[alt.Tooltip("module:N", title="module")]))
    return alt.LayerChart(layer=layers).properties(title=title, width=width, height=height)
