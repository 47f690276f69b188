"""Feature maps and filters as small greyscale images: one panel per map, pixels as rects.

The frame carries each map's bytes as one list (``reports.samples``): the chart
flattens it with a parallel index from Vega's ``sequence``, so the pixel order can
never drift from the byte order, and decodes the real value for the tooltip with
the stored scale (``VALUE_EXPR``). Black is each map's own minimum and white its
maximum: maps are scaled one by one, so brightness does not compare across panels.
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from reports.samples import VALUE_EXPR

COLUMNS = 16
"""Panels per row of a grid: the collector's 16 maps in one compact row."""

PANEL = 24
"""Target panel side in pixels; a pixel of a map is drawn 1 to ``MAX_PIXEL`` px wide.
Small multiples: two grids (first and latest step) fit side by side on the page."""

MAX_PIXEL = 8


def image_grid(
    *,
    maps: pl.DataFrame,
    height: int,
    width: int,
    title: str,
    subtitle: str | None = None,
    panel: str = "map",
    columns: int = COLUMNS,
) -> alt.FacetChart:
    """A grid of ``height`` x ``width`` greyscale panels, one per row of ``maps``.

    ``maps``: map, lo, hi, w (= ``width``), b (the map's bytes, row-major).
    ``panel`` names a panel in its header and tooltip ("channel", "kernel").
    """
    px = max(1, min(MAX_PIXEL, math.ceil(PANEL / max(height, width))))
    rect = (
        alt.Chart(maps)
        .transform_calculate(i="sequence(0, length(datum.b))")
        .transform_flatten(["b", "i"])
        .transform_calculate(x="datum.i % datum.w", y="floor(datum.i / datum.w)", value=VALUE_EXPR)
        .mark_rect()
        .encode(
            x=alt.X("x:O", axis=None),
            y=alt.Y("y:O", axis=None),
            color=alt.Color(
                "b:Q",
                scale=alt.Scale(domain=[0, 255], range=["#000000", "#ffffff"], interpolate="rgb"),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("map:O", title=panel),
                alt.Tooltip("y:O", title="row"),
                alt.Tooltip("x:O", title="column"),
                alt.Tooltip("value:Q", title="value", format=".6~g"),
            ],
        )
        .properties(width=width * px, height=height * px)
    )
    return rect.facet(
        facet=alt.Facet(
            # The bare index over a small panel (the tooltip names it: ``panel``).
            "map:O",
            title=None,
            header=alt.Header(labelFontSize=9, labelPadding=1),
        ),
        columns=columns,
        spacing=4,
        title=alt.TitleParams(title, subtitle=subtitle) if subtitle else title,
    )
