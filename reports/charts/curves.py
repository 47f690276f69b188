"""Training curves: one metric's splits over steps, and the learning rate.

A metric's name is the chart's title and nowhere else in the spec: axis and tooltip
titles are compiled into Vega expressions, where a name is code (``reports.charts.codes``).

Validation is typically logged once per epoch, a handful of points against
hundreds of training steps, so sparse series get a dot per point as well as a
line: a reader must see that "val" is five measurements, not a smooth curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.charts.codes import CODE, coded
from reports.charts.steps import nonfinite_layer, step_x
from reports.theme import HEIGHT, OTHER_COLORS, SMALL_HEIGHT, SPLIT_COLORS, WIDTH

NO_SPLIT = "(no split)"
"""Legend entry for values logged without a split."""

SPARSE = 200
"""Series with at most this many points are drawn with a dot per point."""

_VALUE_FORMAT = ".4~g"


def metric_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    metric: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """``metric`` per split over ``step``: a line per split, dots on sparse ones, red NaN/Inf marks.

    ``points``: split, step, value (finite), and epoch if any. ``markers``: split, step, label.
    """
    pts = points.with_columns(pl.col("split").fill_null(NO_SPLIT))
    bad = markers.with_columns(pl.col("split").fill_null(NO_SPLIT))
    splits = _ordered_splits([*pts["split"].to_list(), *bad["split"].to_list()])
    color = alt.Color(
        "split:N", scale=alt.Scale(domain=splits, range=split_colors(splits)), title="split"
    )
    encoding = {
        "x": step_x(),
        "y": alt.Y("value:Q", title="value", scale=alt.Scale(zero=False)),
        "color": color,
        "tooltip": [
            alt.Tooltip("split:N", title="split"),
            alt.Tooltip("step:Q", title="step"),
            *([alt.Tooltip("epoch:Q", title="epoch")] if "epoch" in pts.columns else []),
            alt.Tooltip("value:Q", title="value", format=_VALUE_FORMAT),
        ],
    }
    layers: list[alt.Chart | alt.LayerChart] = [
        alt.Chart(pts).mark_line(strokeWidth=1.5).encode(**encoding)
    ]
    counts = pts.group_by("split").len()
    sparse = counts.filter(pl.col("len") <= SPARSE)["split"].to_list()
    if sparse:
        dots = pts.filter(pl.col("split").is_in(sparse))
        layers.append(
            alt.Chart(dots).mark_point(filled=True, size=36, opacity=1).encode(**encoding)
        )
    if bad.height:
        layers.append(nonfinite_layer(bad, tooltip=[alt.Tooltip("split:N", title="split")]))
    return alt.LayerChart(layer=layers).properties(title=metric, width=width, height=height)


def lr_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    width: int = WIDTH,
    height: int = SMALL_HEIGHT,
) -> alt.LayerChart:
    """Learning rate over ``step``, one line per parameter group (``lr``, ``lr.group1``, ...).

    ``points``: name, step, value. ``markers``: name, step, label.
    """
    encoding = {
        "x": step_x(),
        "y": alt.Y("value:Q", title="learning rate", axis=alt.Axis(format="~g")),
        "color": alt.Color("name:N", title="param group"),
        "tooltip": [
            alt.Tooltip("name:N", title="group"),
            alt.Tooltip("step:Q", title="step"),
            alt.Tooltip("value:Q", title="lr", format=_VALUE_FORMAT),
        ],
    }
    layers: list[alt.Chart | alt.LayerChart] = [
        alt.Chart(points).mark_line(strokeWidth=1.5, interpolate="step-after").encode(**encoding)
    ]
    if markers.height:
        layers.append(nonfinite_layer(markers, tooltip=[alt.Tooltip("name:N", title="group")]))
    return alt.LayerChart(layer=layers).properties(
        title="learning rate", width=width, height=height
    )


def _ordered_splits(splits: Sequence[str]) -> list[str]:
    """Known splits first in their usual order (train, val, test), then others as seen."""
    seen = list(dict.fromkeys(splits))
    known = [s for s in SPLIT_COLORS if s in seen]
    return known + [s for s in seen if s not in SPLIT_COLORS]


def split_colors(splits: Sequence[str]) -> list[str]:
    """A colour per split: the usual splits' own (``SPLIT_COLORS``), then the others'."""
    others = iter(OTHER_COLORS * (len(splits) // len(OTHER_COLORS) + 1))
    return [SPLIT_COLORS.get(s) or next(others) for s in splits]


def overlay_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    metric: str,
    runs: Sequence[str],
    width: int = WIDTH,
    height: int = HEIGHT,
    title: str | None = None,
) -> alt.HConcatChart:
    """``metric`` of several runs: a panel per split (train | val), a colour per run.

    ``title``: the chart's title (default ``<metric>: all runs``).

    Small multiples rather than one tangle: the panels share the y scale, so train
    and val still compare at a glance, and the run legend sits under the panels
    (never beside them, where long names widened the chart and were cut off).
    ``points``: run, split, step, value (finite). ``markers``: run, split, step, label.
    """
    pts = points.with_columns(pl.col("split").fill_null(NO_SPLIT))
    bad = markers.with_columns(pl.col("split").fill_null(NO_SPLIT))
    splits = _ordered_splits([*pts["split"].to_list(), *bad["split"].to_list()])
    (frame,), names = coded(pts, "run", order=runs)
    panel_width = max(MIN_PANEL, (width - PANEL_GAP * (len(splits) - 1)) // max(1, len(splits)))
    scale = _overlay_scale(pts["value"])
    # The scale's domain is data, never expression source; it also fixes the legend's order.
    color = alt.Color(
        "run:N",
        title="run",
        scale=alt.Scale(domain=list(runs)),
        legend=alt.Legend(
            orient="bottom", direction="vertical", columns=_columns(runs, width), labelLimit=0
        ),
    )
    tooltip = [
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("step:Q", title="step"),
        alt.Tooltip("value:Q", title="value", format=_VALUE_FORMAT),
    ]
    panels = []
    for split in splits:
        mine = frame.filter(pl.col("split") == split)
        encoding = {
            "x": step_x(),
            "y": alt.Y("value:Q", title="value", scale=scale),  # the split: the panel title
            "color": color,
            "tooltip": tooltip,
        }
        line = alt.Chart(mine).transform_lookup(lookup=CODE, from_=names)
        layers: list[alt.Chart | alt.LayerChart] = [
            line.mark_line(strokeWidth=1.4).encode(**encoding)
        ]
        if mine.height and mine.group_by(CODE).len()["len"].max() <= SPARSE:  # type: ignore[operator]
            layers.append(line.mark_point(filled=True, size=24, opacity=1).encode(**encoding))
        flagged = bad.filter(pl.col("split") == split)
        if flagged.height:
            layers.append(nonfinite_layer(flagged, tooltip=[alt.Tooltip("run:N", title="run")]))
        panels.append(
            alt.LayerChart(layer=layers).properties(title=split, width=panel_width, height=height)
        )
    return (
        alt.hconcat(*panels, spacing=PANEL_GAP, title=title or f"{metric}: all runs")
        .resolve_scale(y="shared", color="shared")
        .resolve_legend(color="shared")
    )


MIN_PANEL = 220
"""Narrowest panel of an overlay (one per split)."""

PANEL_GAP = 24

LEGEND_COLUMNS = 3
"""Run legend entries per row under an overlay, at most."""

CHAR_PX = 7
"""Rough width of a legend label's character (11 px system font), to fit the columns."""


def _columns(runs: Sequence[str], width: int) -> int:
    """Legend columns that fit ``width`` (labels are never cut: ``labelLimit`` 0)."""
    longest = max((len(r) for r in runs), default=1)
    return max(1, min(LEGEND_COLUMNS, width // (CHAR_PX * longest + 40)))


WIDE = 1e3
"""An overlay whose positive values span this factor gets a log y: one diverged run's
loss of 1e30 would otherwise flatten every other run onto the axis."""


def _overlay_scale(values: pl.Series) -> alt.Scale:
    lo, hi = values.min(), values.max()
    wide = values.len() and lo is not None and lo > 0 and hi / lo >= WIDE  # type: ignore[operator]
    return alt.Scale(type="log") if wide else alt.Scale(zero=False)
