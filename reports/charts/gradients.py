"""Gradient charts: the norm of every parameter's gradient over steps, and the global norm.

Log scale, because vanishing and exploding gradients are both stories of orders
of magnitude. Parameters are coloured and listed by depth (their registration
order), so "the first layers get 1e-6 of what the last ones get" reads as a
colour gradient sinking to the bottom of the chart. A norm of exactly zero has
no place on a log axis: ``reports.data`` turns it into a red marker like NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.charts.steps import nonfinite_layer, step_x
from reports.theme import DEPTH_SCHEME, HEIGHT, WIDTH

_NORM_FORMAT = ".3~e"

LEGEND_LIMIT = 60
"""Parameters listed in the legend; deeper models show the first ones and a count."""


def layer_norms_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """One line per parameter of its gradient norm over ``step``, log y, ordered by depth.

    ``points``: param, step, norm (> 0). ``markers``: param, step, label. ``order``:
    parameters from the input side to the output side.
    """
    color = alt.Color(
        "param:N",
        sort=list(order),
        scale=alt.Scale(scheme=DEPTH_SCHEME),
        legend=alt.Legend(title="parameter (by depth)", symbolLimit=LEGEND_LIMIT),
    )
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.2)
        .encode(
            x=step_x(),
            y=alt.Y("norm:Q", title="gradient norm", scale=alt.Scale(type="log")),
            color=color,
            tooltip=[
                alt.Tooltip("param:N", title="parameter"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("norm:Q", title="norm", format=_NORM_FORMAT),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        tip = [alt.Tooltip("param:N", title="parameter")]
        layers.append(nonfinite_layer(markers, tooltip=tip, what="norm"))
    return alt.LayerChart(layer=layers).properties(
        title="gradient norm per parameter", width=width, height=height
    )


def global_norm_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """The global gradient norm (sqrt of the sum of squared parameter norms) over ``step``, log y.

    ``points``: step, norm (> 0), params (how many were summed). ``markers``: step, params, label.
    """
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.5, color="#333")
        .encode(
            x=step_x(),
            y=alt.Y("norm:Q", title="global gradient norm", scale=alt.Scale(type="log")),
            tooltip=[
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("norm:Q", title="norm", format=_NORM_FORMAT),
                alt.Tooltip("params:Q", title="parameters"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        tip = [alt.Tooltip("params:Q", title="parameters")]
        layers.append(nonfinite_layer(markers, tooltip=tip, what="norm"))
    return alt.LayerChart(layer=layers).properties(
        title="global gradient norm", width=width, height=height
    )
