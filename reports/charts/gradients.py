"""Gradient charts: the norm of every parameter's gradient over steps, and the global norm
(over the sampled steps' parameters, and at every optimizer step before and after clipping).

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

from reports.charts.codes import BY_CODE, CODE, coded
from reports.charts.steps import nonfinite_layer, step_x
from reports.step_norms import LINES
from reports.theme import DEPTH_SCHEME, HEIGHT, NONFINITE, WIDTH

_NORM_FORMAT = ".3~e"

RANK = "__rank"
"""A panel's place in depth order: the facet sorts by it, never by a list of names (which
Vega-Lite would compile into an expression holding them)."""

BY_RANK = alt.EncodingSortField(field=RANK, op="min")

AXIS_TITLE_HEIGHT = 90
"""The shortest band panel with a y-axis title (``bands_chart``)."""

LEGEND_LIMIT = 60
"""Parameters listed in the legend; deeper models show the first ones and a count."""


def layer_norms_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    value: str = "norm",
    title: str = "gradient norm per parameter",
    y_title: str = "gradient norm",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """One line per parameter of its gradient norm over ``step``, log y, ordered by depth.

    ``points``: param, step, ``value`` (> 0). ``markers``: param, step, label. ``order``:
    parameters from the input side to the output side. ``value``, ``title`` and
    ``y_title`` draw another per-parameter quantity (the weight norm) the same way.
    """
    color = alt.Color(
        "param:N",
        sort=BY_CODE,
        scale=alt.Scale(scheme=DEPTH_SCHEME),
        legend=alt.Legend(title="parameter (by depth)", symbolLimit=LEGEND_LIMIT),
    )
    (frame,), names = coded(points, "param", order=order)
    line = (
        alt.Chart(frame)
        .transform_lookup(lookup=CODE, from_=names)
        .mark_line(strokeWidth=1.2)
        .encode(
            x=step_x(),
            y=alt.Y(f"{value}:Q", title=y_title, scale=alt.Scale(type="log")),
            color=color,
            tooltip=[
                alt.Tooltip("param:N", title="parameter"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip(f"{value}:Q", title=value, format=_NORM_FORMAT),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        tip = [alt.Tooltip("param:N", title="parameter")]
        layers.append(nonfinite_layer(markers, tooltip=tip, what=value))
    return alt.LayerChart(layer=layers).properties(title=title, width=width, height=height)


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


STEP_NORM_COLORS = ("#333", "#f58518")
"""Before clipping in the global norm chart's dark grey, the optimizer's norm in orange."""

STEP_NORM_TITLE = "global gradient norm per optimizer step"


def step_norms_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    subtitle: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """The global gradient norm of every optimizer step, log y: before clipping, and at the step.

    ``points``: line (``reports.step_norms.LINES``), step, norm (> 0). ``markers``: line,
    step, label. ``subtitle`` says how many steps were clipped. The optimizer's line is
    drawn over the pre-clip one: where a step was not clipped they are the same value.
    """
    shown = [line for line in LINES if line in set(points["line"]) | set(markers["line"])]
    colors = [STEP_NORM_COLORS[LINES.index(line)] for line in shown]
    encoding = {
        "x": step_x(),
        "y": alt.Y("norm:Q", title="global gradient norm", scale=alt.Scale(type="log")),
        "color": alt.Color("line:N", title="norm", scale=alt.Scale(domain=shown, range=colors)),
        "tooltip": [
            alt.Tooltip("line:N", title="norm"),
            alt.Tooltip("step:Q", title="step"),
            alt.Tooltip("norm:Q", title="value", format=_NORM_FORMAT),
        ],
    }
    # A layer per line, in LINES order: the optimizer's is drawn on top.
    layers: list[alt.Chart | alt.LayerChart] = [
        alt.Chart(points.filter(pl.col("line") == name))
        .mark_line(strokeWidth=1.5)
        .encode(**encoding)
        for name in shown
    ]
    if markers.height:
        tip = [alt.Tooltip("line:N", title="norm")]
        layers.append(nonfinite_layer(markers, tooltip=tip, what="norm"))
    return alt.LayerChart(layer=layers).properties(
        title=alt.TitleParams(STEP_NORM_TITLE, subtitle=subtitle), width=width, height=height
    )


def bands_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    params: Sequence[str],
    width: int = WIDTH // 2,
    height: int = 110,
    columns: int = 2,
) -> alt.FacetChart:
    """Each parameter's gradient distribution over ``step``: min..max band, mean +/- std, mean.

    ``points``: param, step, lo, hi, mean, std_lo, std_hi, n. ``markers``: param, step,
    label. One panel per parameter, input side first, each with its own (linear) y
    scale: the layers' magnitudes differ by orders, the global norm chart compares them.
    Panels under ``AXIS_TITLE_HEIGHT`` px tall (small multiples) have no y-axis title,
    which would be taller than the panel: the chart's title says what the values are.
    """
    x = step_x()
    y = alt.Scale(zero=False)
    y_title = "gradient value" if height >= AXIS_TITLE_HEIGHT else None
    tip = [
        alt.Tooltip("param:N", title="parameter"),
        alt.Tooltip("step:Q", title="from step"),
        alt.Tooltip("lo:Q", title="min", format=_NORM_FORMAT),
        alt.Tooltip("std_lo:Q", title="mean - std", format=_NORM_FORMAT),
        alt.Tooltip("mean:Q", title="mean", format=_NORM_FORMAT),
        alt.Tooltip("std_hi:Q", title="mean + std", format=_NORM_FORMAT),
        alt.Tooltip("hi:Q", title="max", format=_NORM_FORMAT),
        alt.Tooltip("n:Q", title="sampled steps"),
    ]
    data = pl.concat([points, markers.rename({"label": "marker"})], how="diagonal_relaxed")
    rank = {p: i for i, p in enumerate(params)}
    data = data.with_columns(
        pl.col("param").replace_strict(rank, default=len(rank), return_dtype=pl.Int32).alias(RANK)
    )
    base = alt.Chart().encode(x=x)
    good = base.transform_filter("datum.marker == null")
    layers = [
        good.mark_area(opacity=0.25, color="#4c78a8").encode(
            y=alt.Y("lo:Q", title=y_title, scale=y), y2="hi:Q", tooltip=tip
        ),
        good.mark_area(opacity=0.45, color="#4c78a8").encode(
            y=alt.Y("std_lo:Q", scale=y), y2="std_hi:Q", tooltip=tip
        ),
        good.mark_line(color="#1d3557", strokeWidth=1).encode(y=alt.Y("mean:Q", scale=y)),
    ]
    if markers.height:
        layers.append(
            base.transform_filter("datum.marker != null")
            .mark_rule(color=NONFINITE, strokeDash=[4, 3])
            .encode(tooltip=[alt.Tooltip("step:Q", title="step"), alt.Tooltip("marker:N")])
        )
    return (
        alt.layer(*layers, data=data)
        .properties(width=width, height=height)
        .facet(
            facet=alt.Facet("param:N", sort=BY_RANK, title=None),
            columns=columns,
            title="gradient distribution per parameter (min..max, mean ± std, mean)",
        )
        .resolve_scale(y="independent")
    )
