"""Sizes and colours shared by the charts and the page, so the two read as one document.

Colours carry meaning and are used for that meaning only: red marks values that
could not be drawn (NaN/Inf) and error findings, amber warnings, blue info.
"""

from __future__ import annotations

from typing import Any, Final

WIDTH = 600
HEIGHT = 240
SMALL_HEIGHT = 120
"""Height of secondary charts (learning rate): context, not the main read."""

ROW_HEIGHT = 14
"""Pixels per module row of a heatmap."""

NONFINITE = "#d62728"
"""Markers for values a chart cannot draw (NaN, Inf, and zero on a log scale)."""

SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
"""Stable colours for the usual splits, so train is the same blue in every chart."""

OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
"""For splits without a colour of their own, in order of appearance."""

DEPTH_SCHEME: Final = "viridis"
"""Per-layer charts colour parameters by depth: a gradient fading towards the input
shows as a fade in colour as well as in height."""

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

VEGA_CONFIG: dict[str, Any] = {
    "font": FONT,
    "view": {"stroke": "#ddd"},
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#eee"},
    "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 240},
    "title": {"fontSize": 14, "anchor": "start"},
}
"""Top-level Vega-Lite ``config`` merged into every embedded spec by ``reports.page``."""
