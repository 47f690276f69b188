"""The model's input per feature: its typical mean ± std as a bar, its whole range as a thin rule.

Read across the features, a healthy (standardised) input is a row of similar bars
around zero, inside the shaded band (-1..1); raw 0-255 pixels are a bar around 127
with a rule up to 255, a feature far from zero a bar floating above the others, and
features on different scales bars of very different lengths. The value axis stays
linear, so what looks large is large; when the spreads are far apart (the narrow
features are then flat lines at zero), a second panel draws each feature's std on a
log axis, where a factor of 1,000 is three steps of the axis.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from reports.theme import HEIGHT, SMALL_HEIGHT, WIDTH

BAR = "#4c78a8"
RANGE = "#9e9e9e"
BAND = "#eef5ee"

_FORMAT = ".4~g"


def inputs_chart(
    *,
    features: pl.DataFrame,
    noun: str,
    spreads: bool = False,
    subtitle: str | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart | alt.VConcatChart:
    """``features``: index, mean, std, lo, hi, steps; one row per feature (or channel).

    ``noun``: ``feature`` or ``channel``, for the axis. ``spreads``: add the std panel
    (log axis) under the ranges, for features whose scales are far apart.
    """
    frame = features.with_columns(
        (pl.col("mean") - pl.col("std")).alias("low"),
        (pl.col("mean") + pl.col("std")).alias("high"),
    )
    x = alt.X("index:O", title=f"input {noun}", axis=alt.Axis(labelAngle=0, labelOverlap=True))
    tooltip = [
        alt.Tooltip("index:O", title=noun),
        alt.Tooltip("mean:Q", title="median batch mean", format=_FORMAT),
        alt.Tooltip("std:Q", title="median batch std", format=_FORMAT),
        alt.Tooltip("lo:Q", title="min", format=_FORMAT),
        alt.Tooltip("hi:Q", title="max", format=_FORMAT),
        alt.Tooltip("steps:Q", title="sampled steps"),
    ]
    size = _bar_size(width, features.height)
    base = alt.Chart(frame).encode(x=x, tooltip=tooltip)
    band = (
        alt.Chart(pl.DataFrame({"low": [-1.0], "high": [1.0]}))
        .mark_rect(color=BAND)
        .encode(y=alt.Y("low:Q"), y2="high:Q")
    )
    ranges = base.mark_rule(color=RANGE, strokeWidth=1.5).encode(
        y=alt.Y("lo:Q", title="value"), y2="hi:Q"
    )
    bars = base.mark_bar(color=BAR, opacity=0.85, size=size).encode(y="low:Q", y2="high:Q")
    means = base.mark_tick(color="#1d1d1f", thickness=2, size=size).encode(y="mean:Q")
    text = f"model input per {noun}: mean ± std, range"
    title = alt.TitleParams(text, subtitle=subtitle) if subtitle else text
    layered = alt.LayerChart(layer=[band, ranges, bars, means]).properties(
        width=width, height=height
    )
    if not spreads:
        return layered.properties(title=title)
    stds = (
        # Points, not bars: a bar on a log axis has no zero to stand on.
        alt.Chart(frame.filter(pl.col("std") > 0))
        .mark_point(color=BAR, filled=True, size=50, opacity=1)
        .encode(
            x=x,
            y=alt.Y("std:Q", title="std (log)", scale=alt.Scale(type="log")),
            tooltip=tooltip,
        )
        .properties(width=width, height=SMALL_HEIGHT)
    )
    return alt.vconcat(layered, stds, spacing=8).properties(title=title)


def _bar_size(width: int, n: int) -> int:
    """A bar's width in pixels: most of its band, between 2 and 24."""
    return max(2, min(24, int(width / max(1, n) * 0.6)))
