"""Chart blocks of the training sections: curves, gradients, weights, system (step time,
throughput, peak memory), comparison.

Each function turns one run's ``RunData`` (or, for the overlay and the comparison,
several runs) into ``Chart`` blocks with their sentences and evidence topics
(``reports.evidence``). Chart functions (``reports.charts``, Altair) are imported
on first use: a page without charts never pays for Altair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import polars as pl

from reports.blocks import (
    FULL,
    Chart,
    RunCharts,
    Size,
    display_name,
    marker_caption,
    series_chart,
    to_spec,
)
from reports.comparison import MAX_PARAMS, Comparison
from reports.data import RunData
from reports.metrics import order
from reports.series import Series
from reports.theme import HEIGHT

SYSTEM_HEIGHT = 150
"""Height of the system overlays: context for the curves, not the main read."""


@dataclass(frozen=True)
class Overlaid:
    """A chart of one metric with several runs drawn on it, and those runs' ids."""

    chart: Chart
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class ComparisonBlock:
    """The run comparison: its table (every run) and its chart (runs with a best metric)."""

    comparison: Comparison
    chart: Chart | None
    best: list[str]
    """The best metric of each row, formatted, in row order."""


def curves(run: RunData, ids: Iterator[str]) -> RunCharts:
    from reports.charts.curves import lr_chart, metric_chart  # deferred: imports altair

    charts = [
        series_chart(
            next(ids),
            metric_chart(points=s.points, markers=s.markers, metric=metric),
            s,
            topic=f"metric:{metric}",
        )
        for metric, s in run.metrics.items()
    ]
    if run.lr is not None:
        lr = run.lr
        chart = lr_chart(points=lr.points, markers=lr.markers)
        charts.append(series_chart(next(ids), chart, lr, topic="lr"))
    left_out = run.metrics_left_out
    note = left_out.note(run.run_id) if left_out is not None else None
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts, note)


def overlay(runs: Sequence[RunData], ids: Iterator[str]) -> list[Overlaid]:
    """Every metric (and the learning rate) with all runs on one chart, when there are several.

    One chart per metric replaces a chart per run and metric: the page stays short and
    the runs compare on one axis. A legend names a run by its name alone when no other
    charted run has that name (a name and its id would not fit beside the chart).
    """
    if len(runs) < 2:
        return []
    names = legend_names(runs)
    metrics = order(list(dict.fromkeys(m for r in runs for m in r.metrics)))
    wanted = [
        (m, f"metric:{m}", {r.run_id: r.metrics[m] for r in runs if m in r.metrics})
        for m in metrics
    ]
    lr = {r.run_id: _as_split(r.lr) for r in runs if r.lr is not None}
    if lr:
        wanted.append(("learning rate", "lr", lr))
    return [_overlaid(metric, topic, having, names, ids) for metric, topic, having in wanted]


def system_overlay(runs: Sequence[RunData], ids: Iterator[str]) -> list[Overlaid]:
    """Step time (a panel per part) and throughput with all runs on one chart each, when there
    are several: a chart per run and quantity would make the runs compare across the page."""
    if len(runs) < 2:
        return []
    names = legend_names(runs)
    times = {r.run_id: r.system.time for r in runs if r.system and r.system.time}
    rates = {r.run_id: r.system.throughput for r in runs if r.system and r.system.throughput}
    out = []
    if times:
        parts = {k: _renamed(s, {"part": "split", "seconds": "value"}) for k, s in times.items()}
        title = "step time: data wait and compute"
        out.append(
            _overlaid("step time", "system", parts, names, ids, title=title, height=SYSTEM_HEIGHT)
        )
    if rates:
        per_s = {k: _one_panel(s, "samples_per_s", "samples/s") for k, s in rates.items()}
        out.append(
            _overlaid(
                "throughput",
                "throughput",
                per_s,
                names,
                ids,
                title="throughput",
                height=SYSTEM_HEIGHT,
            )
        )
    return out


def _overlaid(
    metric: str,
    topic: str,
    having: dict[str, Series],
    names: dict[str, str],
    ids: Iterator[str],
    *,
    title: str | None = None,
    height: int = HEIGHT,
) -> Overlaid:
    """One overlay chart of ``having`` (run id -> its series: run, split, step, value)."""
    from reports.charts.curves import overlay_chart

    points = pl.concat(
        [_with_run(s.points, names[run_id]) for run_id, s in having.items()],
        how="diagonal_relaxed",
    )
    markers = pl.concat(
        [_with_run(s.markers, names[run_id]) for run_id, s in having.items()],
        how="diagonal_relaxed",
    )
    chart = overlay_chart(
        points=points,
        markers=markers,
        metric=metric,
        runs=[names[r] for r in having],
        title=title,
        height=height,
    )
    total = sum(s.total for s in having.values())
    drawn = sum(s.drawn for s in having.values())
    marked = sum(s.marked for s in having.values())
    s = Series(points, markers, drawn, total, marked=marked)
    return Overlaid(series_chart(next(ids), chart, s, topic=topic), tuple(having))


def legend_names(runs: Sequence[RunData]) -> dict[str, str]:
    """Run id -> its label in a legend: the name when unique among ``runs``, else name (id)."""
    counts = Counter(r.name for r in runs)
    return {
        r.run_id: r.name if counts[r.name] == 1 else display_name(r.name, r.run_id) for r in runs
    }


def _as_split(lr: Series) -> Series:
    """The learning rate's param groups (``name``) as the overlay's panels (``split``)."""
    return replace(
        lr,
        points=lr.points.rename({"name": "split"}),
        markers=lr.markers.rename({"name": "split"}),
    )


def _renamed(s: Series, columns: dict[str, str]) -> Series:
    return replace(
        s,
        points=s.points.rename(columns, strict=False),
        markers=s.markers.rename(columns, strict=False),
    )


def _one_panel(s: Series, value: str, panel: str) -> Series:
    """A series without splits as the overlay's one panel, named ``panel``."""
    split = pl.lit(panel).alias("split")
    return replace(
        s,
        points=s.points.select(split, "step", pl.col(value).alias("value")),
        markers=s.markers.with_columns(split),
    )


def _with_run(frame: pl.DataFrame, run: str) -> pl.DataFrame:
    return frame.select(pl.lit(run).alias("run"), pl.all())


def gradients(run: RunData, ids: Iterator[str], *, size: Size = FULL) -> RunCharts:
    from reports.charts.activations import heatmap_chart
    from reports.charts.gradients import (
        bands_chart,
        global_norm_chart,
        layer_norms_chart,
        step_norms_chart,
    )

    charts = []
    if run.step_norms is not None:
        n = run.step_norms
        s = n.series
        chart = step_norms_chart(
            points=s.points,
            markers=s.markers,
            subtitle=n.subtitle,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), chart, s, topic="grad_step"))
    if run.global_norm is not None:
        s = run.global_norm
        chart = global_norm_chart(
            points=s.points, markers=s.markers, width=size.width, height=size.height
        )
        charts.append(series_chart(next(ids), chart, s, topic="grad_global"))
    if run.layer_norms is not None:
        s = run.layer_norms
        chart = layer_norms_chart(
            points=s.points,
            markers=s.markers,
            order=run.param_order,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), chart, s, topic="grad_norms"))
    if run.grad_heatmap is not None:
        heat = run.grad_heatmap
        chart = heatmap_chart(
            cells=heat.cells,
            markers=heat.markers,
            order=heat.order,
            value="norm",
            title="gradient norm per parameter (log colour)",
            log=True,
            width=size.width,
            row_height=size.heat_row,
            max_height=size.heat_max,
        )
        caption = marker_caption(heat.markers, noun="cell", verb="coloured", mark="red")
        spec = to_spec(chart)
        charts.append(Chart(next(ids), spec, heat.note, caption, topic="grad_heatmap"))
    if run.grad_bands is not None and run.grad_bands.points.height:
        b = run.grad_bands
        bands = bands_chart(
            points=b.points,
            markers=b.markers,
            params=b.params,
            width=size.panel_width,
            height=size.panel_height,
            columns=size.panels,
        )
        caption = marker_caption(b.markers, noun="bucket", mark="red dashed rules")
        charts.append(Chart(next(ids), to_spec(bands), b.note or None, caption, "grad_bands"))
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def weights(run: RunData, ids: Iterator[str], *, size: Size = FULL) -> RunCharts:
    from reports.charts.weights import update_ratio_chart, weight_norms_chart

    charts = []
    w = run.weights
    if w is not None and w.norms is not None:
        s = w.norms
        chart = weight_norms_chart(
            points=s.points,
            markers=s.markers,
            order=run.param_order,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), chart, s, topic="weights"))
    if w is not None and w.ratio is not None:
        s = w.ratio
        chart = update_ratio_chart(
            points=s.points,
            markers=s.markers,
            order=run.param_order,
            band=w.band,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), chart, s, topic="update_ratio"))
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def system(run: RunData, ids: Iterator[str], *, timing: bool = True) -> RunCharts:
    """Step time and throughput (``timing``: False when the overlays draw them), and peak
    memory against the device's total: each run has its own total, so never overlaid."""
    from reports.charts.system import memory_chart, step_time_chart, throughput_chart

    charts = []
    if timing and run.system is not None and run.system.time is not None:
        s = run.system.time
        chart = step_time_chart(points=s.points, markers=s.markers)
        charts.append(series_chart(next(ids), chart, s, topic="system"))
    if timing and run.system is not None and run.system.throughput is not None:
        s = run.system.throughput
        chart = throughput_chart(points=s.points, markers=s.markers)
        charts.append(series_chart(next(ids), chart, s, topic="throughput"))
    if run.memory is not None:
        m = run.memory
        s = m.series
        chart = memory_chart(
            points=s.points, markers=s.markers, limits=m.limits, subtitle=m.subtitle
        )
        charts.append(series_chart(next(ids), chart, s, topic="memory"))
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def comparison(c: Comparison | None, ids: Iterator[str]) -> ComparisonBlock | None:
    """The comparison's block; None when there is nothing to compare."""
    if c is None:
        return None
    chart = None
    if c.points["run"].n_unique() >= 2 and c.params:
        from reports.charts.comparison import comparison_chart

        spec = to_spec(
            comparison_chart(
                points=c.points,
                params=c.params[:MAX_PARAMS],
                metric=c.metric,
                lower_is_better=c.lower_is_better,
            )
        )
        left = len(c.params) - MAX_PARAMS
        note = f"{left} more varying hyperparameters are in the table only." if left > 0 else None
        chart = Chart(next(ids), spec, note=note, topic="comparison")
    best = ["" if r.best is None else f"{r.best:.4g}" for r in c.rows]
    return ComparisonBlock(c, chart, best)
