"""A page's budget: how many charts, lines, points and pixels it draws, shared by its runs.

A report is mailed and opened in a browser, so it stays a few MB whatever the store
holds (1,000 metrics x 2,000 steps once made a 123 MB page that took 33 s and 1.8 GB).
``Budget()`` is what the charts of one run may draw when it is the only run with
charts: about 50,000 points (~50 bytes of JSON each, names sent once per chart:
``reports.charts.codes``) and 98,304 pixels of feature maps; with the 0.9 MB of
inlined Vega that is under 5 MB when every kind of chart is drawn at its most. With
more runs each gets its ``share``, down to a floor that keeps a chart readable, and at
most ``MAX_CHARTED_RUNS`` runs get charts.

Nothing is left out silently: the page says "Curves for 40 of 1,002 metrics" and names
the rest, "Lines for 60 of 1,000 parameters", "red marks for the first 200", "4 more
sampled modules not drawn", next to what it drew.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from reports.decimate import MAX_POINTS

MAX_CHARTED_RUNS = 12
"""Runs with charts at most, however many are asked for: each brings ~20 charts, and
beyond a dozen the page's points are spread too thin to read."""

MAP_PIXELS = 16 * 32 * 32
"""Pixels of one sampled tensor at most (``reports.samples``: 16 maps of 32 x 32)."""


@dataclass(frozen=True)
class Budget:
    """What the charts of one run may draw. Defaults: the run is the page's only one."""

    metric_charts: int = 40
    """Metrics with a curve; the rest are named under the curves (``reports.metrics``)."""
    curve_points: int = 8_000
    """Points the metric curves share; one line still draws at most ``series``."""
    series: int = MAX_POINTS
    """Points of one line (``reports.decimate``); the learning rate's groups share them."""
    lines: int = 60
    """Lines of a chart with one line per parameter, module or split."""
    line_points: int = 6_000
    """Points such a chart shares among its lines."""
    cells: int = 2_500
    """Cells of a heatmap (``reports.heatmap``): ~100 bytes each, the fattest point."""
    markers: int = 200
    """Marks of values a chart cannot draw (NaN, Inf): the first ones by step."""
    pixels: int = 3 * 2 * MAP_PIXELS
    """Pixels of feature maps and filters: three sampled tensors at two steps each."""
    summary_rows: int = 300
    """Rows of the model summary table (``reports.internals``)."""

    def share(self, runs: int) -> Budget:
        """The budget of each of ``runs`` runs with charts: this one divided, down to ``FLOOR``.

        Example::

            >>> Budget().share(10).curve_points
            800
        """
        if runs <= 1:
            return self
        return Budget(
            **{
                f.name: max(getattr(FLOOR, f.name), getattr(self, f.name) // runs)
                for f in fields(self)
            }
        )

    @property
    def band_buckets(self) -> int:
        """Step buckets of the gradient band chart: its six parameters' rows are a tenth of
        ``line_points`` (a row holds six numbers), between 10 and 100 buckets."""
        return max(10, min(100, self.line_points // 60))


FLOOR = Budget(
    metric_charts=2,
    curve_points=400,
    series=100,
    lines=6,
    line_points=300,
    cells=150,
    markers=20,
    pixels=2 * 32 * 32,
    summary_rows=20,
)
"""The least a run with charts gets: loss and accuracy, six lines, one map."""
