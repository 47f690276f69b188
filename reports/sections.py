"""The report's sections as plain values: what the template lays out, already decided.

``build`` turns ``reports.data.ReportData`` into a ``Page``: header facts, findings
grouped per run (worst first, as the diagnosis sorted them), the runs table, and
chart blocks (``reports.blocks``: a Vega-Lite spec plus the sentences under it),
the sections about the model's inside (``reports.internals``: summary table,
activations, feature maps and filters, NaN origin), and the export benchmarks
(``reports.exports``). A section or a run without data gets no block; the run
names that lacked it are listed instead, so an absent chart is never mistaken for
a clean one.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from reports import exports, internals
from reports.blocks import RunCharts, display_name, series_chart
from reports.data import ReportData, RunData
from reports.exports import RunExports
from reports.internals import ModelTable, OriginBox, RunImages

log = logging.getLogger(__name__)

SEVERITIES = ("error", "warning", "info")
"""Worst first; also the CSS classes of the badges (nothing else reaches a class name)."""


@dataclass(frozen=True)
class Header:
    title: str
    store_path: str
    runs: int
    generated_at: str
    schema_version: int
    package_version: str


@dataclass(frozen=True)
class FindingRow:
    severity: str
    rule: str
    subject: str
    step: str
    message: str
    suggestion: str
    origin: OriginBox | None = None
    """The run's NaN-origin box, linked from a ``nonfinite`` finding."""


NONFINITE_RULE = "nonfinite"
"""The rule whose findings link to the NaN-origin box."""


@dataclass(frozen=True)
class RunFindings:
    """One run's findings table, and the rules that could not judge it (rule, reason)."""

    run_id: str
    name: str
    rows: list[FindingRow]
    not_evaluated: list[tuple[str, str]]
    counts: dict[str, int]


@dataclass(frozen=True)
class OverviewRow:
    name: str
    run_id: str
    status: str
    steps: str
    duration: str
    config: list[str]
    error: str


@dataclass(frozen=True)
class Page:
    header: Header
    findings: list[RunFindings]
    overview: list[OverviewRow]
    curves: list[RunCharts] = field(default_factory=list)
    gradients: list[RunCharts] = field(default_factory=list)
    without_curves: list[str] = field(default_factory=list)
    without_gradients: list[str] = field(default_factory=list)
    models: list[ModelTable] = field(default_factory=list)
    activations: list[RunCharts] = field(default_factory=list)
    images: list[RunImages] = field(default_factory=list)
    origins: list[OriginBox] = field(default_factory=list)
    without_models: list[str] = field(default_factory=list)
    without_activations: list[str] = field(default_factory=list)
    without_images: list[str] = field(default_factory=list)
    exports: list[RunExports] = field(default_factory=list)
    without_exports: list[str] = field(default_factory=list)

    @property
    def has_charts(self) -> bool:
        drawn = self.curves or self.gradients or self.activations or self.images
        return bool(drawn) or any(e.chart for e in self.exports)


def build(data: ReportData, *, title: str | None = None) -> Page:
    """Decide everything the page shows; the template only lays it out."""
    ids = (f"chart-{i}" for i in itertools.count(1))
    runs = data.per_run
    curves = [_curves(run, ids) for run in runs]
    grads = [_gradients(run, ids) for run in runs]
    models = [internals.model_table(run) for run in runs]
    acts = [internals.activation_charts(run, ids) for run in runs]
    images = [internals.image_blocks(run, ids) for run in runs]
    origins = [internals.origin_box(run, i) for i, run in enumerate(runs, start=1)]
    benchmarks = [exports.export_block(r, data.findings.get(r.run_id, []), ids) for r in runs]
    return Page(
        header=Header(
            title=title or "Training report",
            store_path=data.store_path,
            runs=len(data.per_run),
            generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            schema_version=data.schema_version,
            package_version=_package_version(),
        ),
        findings=[_findings(data, run, origin) for run, origin in zip(runs, origins, strict=True)],
        overview=[_overview(row) for row in data.runs.to_dicts()],
        curves=[c for c in curves if c.charts],
        gradients=[g for g in grads if g.charts],
        without_curves=[c.name for c in curves if not c.charts],
        without_gradients=[g.name for g in grads if not g.charts],
        models=[m for m in models if m is not None],
        activations=[a for a in acts if a.charts],
        images=[i for i in images if i.blocks],
        origins=[o for o in origins if o is not None],
        without_models=[
            display_name(r.name, r.run_id) for r, m in zip(runs, models, strict=True) if m is None
        ],
        without_activations=[a.name for a in acts if not a.charts],
        without_images=[i.name for i in images if not i.blocks],
        exports=[b for b in benchmarks if b is not None],
        without_exports=[
            display_name(r.name, r.run_id)
            for r, b in zip(runs, benchmarks, strict=True)
            if b is None
        ],
    )


def _package_version() -> str:
    try:
        return metadata.version("telemetry")
    except metadata.PackageNotFoundError:
        return "unknown"


def _findings(data: ReportData, run: RunData, origin: OriginBox | None) -> RunFindings:
    found = data.findings.get(run.run_id, [])
    rows = [
        FindingRow(
            severity=f.severity.value if f.severity.value in SEVERITIES else "info",
            rule=f.rule,
            subject=f.subject or "",
            step="" if f.step is None else str(f.step),
            message=f.message,
            suggestion=f.suggestion,
            origin=origin if f.rule == NONFINITE_RULE else None,
        )
        for f in found
    ]
    counts = {s: sum(r.severity == s for r in rows) for s in SEVERITIES}
    skipped = [(n.rule, n.reason) for n in data.not_evaluated.get(run.run_id, [])]
    return RunFindings(run.run_id, display_name(run.name, run.run_id), rows, skipped, counts)


def _overview(row: dict[str, Any]) -> OverviewRow:
    steps = row.get("steps")
    return OverviewRow(
        name=str(row.get("name") or ""),
        run_id=str(row.get("run_id") or ""),
        status=str(row.get("status") or ""),
        steps="" if steps is None else f"{steps:,}",
        duration=format_duration(row.get("duration_s")),
        config=config_items(row.get("config")),
        error=str(row.get("error") or ""),
    )


def format_duration(seconds: float | None) -> str:
    """``42.0 s``, ``3m 07s``, ``2h 05m``: precise where it matters, short everywhere."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"


def config_items(config: str | None) -> list[str]:
    """The run's config (JSON text) as ``key=value`` strings; nested values stay JSON."""
    if not config:
        return []
    try:
        parsed = json.loads(config)
    except ValueError:
        return [config]
    if not isinstance(parsed, dict):
        return [json.dumps(parsed)]
    return [
        f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
        for k, v in parsed.items()
    ]


def _curves(run: RunData, ids: Iterator[str]) -> RunCharts:
    from reports.charts.curves import lr_chart, metric_chart  # deferred: imports altair

    charts = [
        series_chart(
            next(ids),
            metric_chart(points=s.points, markers=s.markers, metric=metric),
            s,
        )
        for metric, s in run.metrics.items()
    ]
    if run.lr is not None:
        charts.append(
            series_chart(next(ids), lr_chart(points=run.lr.points, markers=run.lr.markers), run.lr)
        )
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def _gradients(run: RunData, ids: Iterator[str]) -> RunCharts:
    from reports.charts.gradients import global_norm_chart, layer_norms_chart

    charts = []
    if run.layer_norms is not None:
        s = run.layer_norms
        chart = layer_norms_chart(points=s.points, markers=s.markers, order=run.param_order)
        charts.append(series_chart(next(ids), chart, s))
    if run.global_norm is not None:
        s = run.global_norm
        charts.append(
            series_chart(next(ids), global_norm_chart(points=s.points, markers=s.markers), s)
        )
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)
