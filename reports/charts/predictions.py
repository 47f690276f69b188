"""Prediction charts: a confusion matrix with each class's examples beside it, per-class
recall over steps, and regression errors (rmse, bias, r2) over steps.

The matrix is normalised per true class: a row's colours add up to one, and the
diagonal cell is that class's recall, so a minority class that is never predicted
reads as a pale diagonal however few examples it has; the counts are in the tooltip
and the bars beside give each class's examples (class imbalance at a glance). Rows and
columns share one order (class ids), so the diagonal is the diagonal. Class ids are
integers, written as text by ``reports.predictions``: the sort lists below are never
run data (split names reach a chart only as titles and data values).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.charts.curves import split_colors
from reports.charts.steps import nonfinite_layer, step_x
from reports.predictions import OTHER, QUANTITIES
from reports.theme import HEIGHT, WIDTH

SHARE_RANGE = ["#f7fbff", "#08306b"]
"""A share of 0 (white) to 1 (dark blue), as the activations' zero fraction."""

TEXT_UP_TO = 12
"""Matrices of at most this many classes print each cell's share in it."""

_QUANTITY_TITLES = {
    "rmse": "rmse",
    "bias": "bias (mean of output - target)",
    "r2": "r²",
}


def confusion_chart(
    *,
    cells: pl.DataFrame,
    per_class: pl.DataFrame,
    classes: Sequence[str],
    title: str,
    subtitle: str,
    width: int = WIDTH,
) -> alt.HConcatChart:
    """``cells``: true, predicted, count, share, support. ``per_class``: true, support, recall.

    ``classes``: the rows (and columns, then ``OTHER`` when some cell has it) in order.
    """
    columns = [*classes, OTHER] if (cells["predicted"] == OTHER).any() else list(classes)
    side = max(60, int(width * 0.75))
    cell = side / max(1, len(columns))
    height = max(40, int(cell * len(classes)))
    y = alt.Y("true:O", title="true class", sort=list(classes), axis=alt.Axis(labelOverlap=True))
    x = alt.X(
        "predicted:O",
        title="predicted class",
        sort=columns,
        axis=alt.Axis(labelAngle=0, labelOverlap=True, orient="top"),
    )
    tips = [
        alt.Tooltip("true:N", title="true class"),
        alt.Tooltip("predicted:N", title="predicted"),
        alt.Tooltip("count:Q", title="examples", format=","),
        alt.Tooltip("share:Q", title="share of the true class", format=".1%"),
        alt.Tooltip("support:Q", title="examples of the true class", format=","),
    ]
    base = alt.Chart(cells).encode(x=x, y=y)
    rects = base.mark_rect().encode(
        color=alt.Color(
            "share:Q",
            title="share of true class",
            scale=alt.Scale(domain=[0, 1], range=SHARE_RANGE),
        ),
        tooltip=tips,
    )
    layers: list[alt.Chart] = [rects]
    if len(columns) <= TEXT_UP_TO:
        layers.append(
            base.mark_text(fontSize=10).encode(
                text=alt.Text("share:Q", format=".0%"),
                color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")),
                tooltip=tips,
            )
        )
    matrix = alt.LayerChart(layer=layers).properties(width=side, height=height)
    bars = (
        alt.Chart(per_class)
        .mark_bar(color="#9e9e9e")
        .encode(
            y=alt.Y(
                "true:O", sort=list(classes), title=None, axis=alt.Axis(labels=False, ticks=False)
            ),
            x=alt.X("support:Q", title="examples", axis=alt.Axis(tickCount=3, format="~s")),
            tooltip=[
                alt.Tooltip("true:N", title="true class"),
                alt.Tooltip("support:Q", title="examples", format=","),
                alt.Tooltip("recall:Q", title="recall", format=".1%"),
            ],
        )
        .properties(width=max(40, width - side - 40), height=height)
    )
    return alt.hconcat(matrix, bars, spacing=8).properties(
        title=alt.TitleParams(title, subtitle=subtitle)
    )


def recall_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    split: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """``points``: class, step, recall. ``markers``: class, step, label."""
    line = (
        alt.Chart(points)
        .mark_line(strokeWidth=1.5, point=True)
        .encode(
            x=step_x(),
            y=alt.Y("recall:Q", title="recall", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("class:N", title="true class", legend=alt.Legend(symbolLimit=20)),
            tooltip=[
                alt.Tooltip("class:N", title="class"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("recall:Q", title="recall", format=".1%"),
            ],
        )
    )
    layers: list[alt.Chart | alt.LayerChart] = [line]
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[alt.Tooltip("class:N", title="class")]))
    return alt.LayerChart(layer=layers).properties(
        title=alt.TitleParams("recall per class", subtitle=f"split {split}"),
        width=width,
        height=height,
    )


def residuals_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    lines: Sequence[str],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.VConcatChart:
    """A panel per quantity (``QUANTITIES``) over steps, a line per split (and output column).

    ``points``: quantity, line, step, value. ``markers``: quantity, line, step, label.
    ``lines``: the lines in legend order (split names: data values, and the legend's
    domain, never expression source).
    """
    color = alt.Color(
        "line:N",
        title="split",
        scale=alt.Scale(domain=list(lines), range=split_colors(lines)),
    )
    panels = []
    for q in QUANTITIES:
        having = points.filter(pl.col("quantity") == q)
        marked = markers.filter(pl.col("quantity") == q)
        if not having.height and not marked.height:
            continue
        chart = (
            alt.Chart(having)
            .mark_line(strokeWidth=1.5, point=having.height <= 60)
            .encode(
                x=step_x(),
                y=alt.Y("value:Q", title=_QUANTITY_TITLES[q]),
                color=color,
                tooltip=[
                    alt.Tooltip("line:N", title="split"),
                    alt.Tooltip("step:Q", title="step"),
                    alt.Tooltip("value:Q", title=q, format=".4~g"),
                ],
            )
        )
        layers: list[alt.Chart | alt.LayerChart] = [chart]
        if marked.height:
            layers.append(nonfinite_layer(marked, tooltip=[alt.Tooltip("line:N", title="split")]))
        panels.append(
            alt.LayerChart(layer=layers).properties(width=width, height=max(60, height // 2))
        )
    return alt.vconcat(*panels, spacing=10).properties(title="regression errors per split")
