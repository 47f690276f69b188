"""The unit the page lays out: one embedded chart with its sentences, grouped per run.

Every section (curves, gradients, activations, images) hands the template a list
of ``RunCharts``; a ``Chart`` carries a Vega-Lite spec and the sentences printed
under it: how much was decimated (``note``) and what the red marks are
(``caption``). Element ids come from a page-wide counter, never from run data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reports.series import LABEL, Series
from reports.theme import HEIGHT, ROW_HEIGHT, WIDTH

if TYPE_CHECKING:
    import altair as alt
    import polars as pl


@dataclass(frozen=True)
class Chart:
    """One embedded chart: its element id (never derived from run data) and its sentences."""

    id: str
    spec: dict[str, Any]
    note: str | None = None
    """How many points were drawn, when the series were decimated."""
    caption: str | None = None
    """What the red marks are, when there are any."""
    topic: str | None = None
    """What the chart shows evidence of (``reports.evidence``): findings link to it."""


@dataclass(frozen=True)
class RunCharts:
    run_id: str
    name: str
    charts: list[Chart]
    note: str | None = None
    """What the run's budget left out of this section (``reports.budget``), when anything."""


@dataclass(frozen=True)
class Size:
    """How large a section draws a run's charts (``reports.figures``, ``reports.internals``)."""

    width: int = WIDTH
    height: int = HEIGHT
    heat_row: int = ROW_HEIGHT
    """Pixels per row of a heatmap."""
    heat_max: int | None = None
    """A heatmap's height at most (its rows get thinner); None: a row is always ``heat_row``."""
    panel_width: int = WIDTH // 2
    panel_height: int = 110
    panels: int = 2
    """Panels per row of a faceted chart (the gradient bands)."""


FULL = Size()
"""A lone run: each chart 600 px wide, one or two to a row."""

SMALL = Size(
    width=180, height=110, heat_row=8, heat_max=160, panel_width=120, panel_height=40, panels=2
)
"""Several runs: small multiples, one chart per run and quantity, three runs to a row of the
page (``reports.multiples``), each chart about 380 px wide with its axis and legend."""


def display_name(name: str, run_id: str) -> str:
    return name if name == run_id else f"{name} ({run_id})"


def series_chart(
    chart_id: str, chart: alt.TopLevelMixin, series: Series, *, topic: str | None = None
) -> Chart:
    """A chart of ``series``, with its decimation note and its marker caption."""
    caption = marker_caption(series.markers, total=series.marked)
    return Chart(chart_id, to_spec(chart), note=series.note, caption=caption, topic=topic)


def to_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart as a Vega-Lite dict, its frames inlined as top-level ``datasets``.

    Altair's default transformer refuses frames over 5,000 rows (ten parameters x
    500 steps); ``reports.data`` bounds the sizes instead (``reports.decimate``), so
    the limit is lifted for this one call. Frames rather than inline dicts because
    Altair deep-copies dicts on every layer and validates ``InlineData`` row by row
    (~3x slower on a 4-run report).
    """
    import altair as alt

    with alt.data_transformers.enable("default", max_rows=None):
        return chart.to_dict()


def marker_caption(
    markers: pl.DataFrame,
    *,
    noun: str = "value",
    verb: str = "drawn",
    mark: str = "red marks",
    total: int = 0,
) -> str | None:
    """``2 values could not be drawn (NaN, +Inf; first at step 41): red marks.``

    ``total``: how many there were when ``markers`` keeps only the first ones by step
    (``reports.series.MAX_MARKERS``); the sentence then says how many are marked.
    """
    if not markers.height:
        return None
    labels = ", ".join(sorted(set(markers[LABEL].to_list())))
    first = min(markers["step"].to_list())
    n = max(total, markers.height)
    nouns = noun if n == 1 else noun + "s"
    some = f" for the first {markers.height:,}" if markers.height < n else ""
    return f"{n:,} {nouns} could not be {verb} ({labels}; first at step {first}): {mark}{some}."
