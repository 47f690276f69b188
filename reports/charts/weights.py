"""Weight and update charts: each parameter's weight norm, and its update/weight ratio in a band.

``||update|| / ||weight||`` is how much of a weight one optimizer step replaces.
The band of the ``update_ratio`` rule is shaded green behind the lines, so a layer
that learns too slowly (below) or is being overwritten (above) is outside the
green at a glance. Log scales, as the ratio is a story of orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.charts.gradients import layer_norms_chart
from reports.theme import HEIGHT, WIDTH

HEALTHY = "#2e7d32"


def weight_norms_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """``points``: param, step, weight (> 0). ``markers``: param, step, label."""
    return layer_norms_chart(
        points=points,
        markers=markers,
        order=order,
        value="weight",
        title="weight norm per parameter",
        y_title="weight norm",
        width=width,
        height=height,
    )


def update_ratio_chart(
    *,
    points: pl.DataFrame,
    markers: pl.DataFrame,
    order: Sequence[str],
    band: tuple[float, float],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> alt.LayerChart:
    """``points``: param, step, ratio (> 0); the healthy ``band`` [low, high] shaded behind."""
    lines = layer_norms_chart(
        points=points,
        markers=markers,
        order=order,
        value="ratio",
        title="update / weight ratio per parameter",
        y_title="||update|| / ||weight||",
        width=width,
        height=height,
    )
    low, high = band
    shade = (
        alt.Chart(pl.DataFrame({"low": [low], "high": [high]}))
        .mark_rect(color=HEALTHY, opacity=0.12)
        .encode(
            y=alt.Y("low:Q", scale=alt.Scale(type="log")),
            y2="high:Q",
            tooltip=[
                alt.Tooltip("low:Q", title="healthy from", format="~e"),
                alt.Tooltip("high:Q", title="healthy to", format="~e"),
            ],
        )
    )
    # Altair hoists the lines' shared data onto their LayerChart: keep it with them.
    inner = alt.LayerChart(data=lines.data, layer=lines.layer)
    return alt.LayerChart(layer=[shade, inner]).properties(
        title=lines.title, width=width, height=height
    )
