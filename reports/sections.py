"""The report's sections as plain values: what the template lays out, already decided.

``build`` turns ``reports.data.ReportData`` into a ``Page``: header facts, findings
grouped per run (worst first, as the diagnosis sorted them, each linked to the
chart that shows its evidence: ``reports.evidence``), the runs table, and
chart blocks (``reports.blocks``: a Vega-Lite spec plus the sentences under it;
``reports.figures``: curves, gradients, weights and updates, system, comparison;
``reports.model_io``: the model's inputs and its predictions; ``reports.mattered``:
what mattered in a sweep), the sections about the model's inside
(``reports.internals``: summary table, activations, feature maps and filters, NaN
origin), and the export benchmarks
(``reports.exports``). A section or a run without data gets no block; the run
names that lacked it are listed instead, so an absent chart is never mistaken for
a clean one.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING, Any

from reports import evidence, exports, figures, internals, mattered, model_io, multiples
from reports.blocks import FULL, SMALL, Chart, RunCharts, display_name
from reports.budget import MAX_CHARTED_RUNS
from reports.comparison import Metric
from reports.data import ReportData, RunData
from reports.evidence import Link
from reports.exports import RunExports
from reports.figures import ComparisonBlock, Overlaid
from reports.internals import ModelTable, OriginBox, RunImages, SharedModel
from reports.mattered import MatteredBlock
from reports.multiples import Row

if TYPE_CHECKING:
    from analysis import Finding

log = logging.getLogger(__name__)

MAX_LISTED = 8
"""Validation metrics listed per run in the runs table (best and final); the rest counted."""

MAX_CONFIG = 20
"""Config items listed per run in the runs table; the rest counted."""

SEVERITIES = ("error", "warning", "info")
"""Worst first; also the CSS classes of the badges (nothing else reaches a class name)."""


@dataclass(frozen=True)
class Header:
    title: str
    store_path: str
    runs: int
    detailed: int
    """Runs with per-run sections (the most recent ones when there are many)."""
    generated_at: str
    schema_version: int
    package_version: str
    max_charted: int = MAX_CHARTED_RUNS
    """Runs with charts at most, whatever was asked (``reports.budget``)."""


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
    evidence: Link | None = None
    """The chart of the same run that shows the evidence, when the page draws it."""
    more_evidence: tuple[Link, ...] = ()
    """Further charts of the same run with evidence (``reports.evidence.ALSO_TOPICS``)."""
    caused_by: str = ""
    """The finding of the same run that explains this one (shown under it)."""
    depth: int = 0
    """0 for a cause or a lone finding, 1 and more for consequences under it."""


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
    best: list[str] = field(default_factory=list)
    """Best value of each validation metric (``loss 0.0365``)."""
    final: list[str] = field(default_factory=list)
    findings: str = ""
    """``2 errors, 1 warning``; empty for a clean run."""
    sort: dict[str, str] = field(default_factory=dict)
    """Column -> the value the table sorts that column by (numbers as numbers)."""


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
    overlay: list[Chart] = field(default_factory=list)
    weights: list[RunCharts] = field(default_factory=list)
    without_weights: list[str] = field(default_factory=list)
    system: list[RunCharts] = field(default_factory=list)
    without_system: list[str] = field(default_factory=list)
    comparison: ComparisonBlock | None = None
    gradient_rows: list[Row] = field(default_factory=list)
    """Several runs: the gradient charts as small multiples, a row per quantity."""
    weight_rows: list[Row] = field(default_factory=list)
    activation_rows: list[Row] = field(default_factory=list)
    system_overlay: list[Chart] = field(default_factory=list)
    """Several runs: step time and throughput with every run on one chart each."""
    model_groups: list[SharedModel] = field(default_factory=list)
    """The model summaries, each table once with the runs that share it."""
    image_columns: int = 0
    """Panels per row of a feature-map grid (0: the default, 16)."""
    inputs: list[RunCharts] = field(default_factory=list)
    """The model's input per feature or channel (``reports.model_io``)."""
    without_inputs: list[str] = field(default_factory=list)
    input_rows: list[Row] = field(default_factory=list)
    predictions: list[RunCharts] = field(default_factory=list)
    """Confusion matrices, per-class recall, regression errors (``reports.model_io``)."""
    without_predictions: list[str] = field(default_factory=list)
    prediction_rows: list[Row] = field(default_factory=list)
    mattered: MatteredBlock | None = None
    """What mattered: the sweep's ranking of the hyperparameters, when the runs' configs
    differ (``reports.mattered``)."""

    @property
    def has_charts(self) -> bool:
        drawn = self.overlay or self.curves or self.gradients or self.activations or self.images
        timed = self.system or self.system_overlay
        more = self.weights or timed or (self.comparison and self.comparison.chart)
        io = self.inputs or self.predictions
        swept = self.mattered and self.mattered.parallel
        return bool(drawn or more or io or swept) or any(e.chart for e in self.exports)


def build(data: ReportData, *, title: str | None = None) -> Page:
    """Decide everything the page shows; the template only lays it out."""
    ids = (f"chart-{i}" for i in itertools.count(1))
    runs = data.per_run
    overlay = figures.overlay(runs, ids)
    # Several runs: every metric is one chart with all runs on it; per-run curves only
    # for a lone run. A run's budget note (metrics left out) stays either way.
    curves = [
        figures.curves(run, ids) if not overlay else _overlaid_only(run, overlay) for run in runs
    ]
    # Several runs: small multiples, a row per quantity with a small chart per run
    # (``reports.multiples``), step timings overlaid like the curves.
    several = len(runs) > 1
    size = SMALL if several else FULL
    predicted = [model_io.predictions(run, ids, size=size) for run in runs]
    grads = [figures.gradients(run, ids, size=size) for run in runs]
    weights = [figures.weights(run, ids, size=size) for run in runs]
    models = [internals.model_table(run) for run in runs]
    fed = [model_io.inputs(run, ids, size=size) for run in runs]
    acts = [internals.activation_charts(run, ids, size=size) for run in runs]
    image_columns = IMAGE_COLUMNS if several else 0
    images = [internals.image_blocks(run, ids, columns=image_columns or None) for run in runs]
    origins = [internals.origin_box(run, i) for i, run in enumerate(runs, start=1)]
    system_overlay = figures.system_overlay(runs, ids)
    system = [figures.system(run, ids, timing=not system_overlay) for run in runs]
    names = figures.legend_names(runs)
    benchmarks = [exports.export_block(r, data.findings.get(r.run_id, []), ids) for r in runs]
    charts: dict[str, list[Chart]] = {r.run_id: [] for r in runs}
    for o in [*overlay, *system_overlay]:
        for run_id in o.run_ids:
            charts[run_id].append(o.chart)
    for blocks in (curves, predicted, grads, weights, fed, acts, system):
        for block in blocks:
            charts[block.run_id].extend(block.charts)
    for r, b in zip(runs, benchmarks, strict=True):
        if b is not None and b.chart is not None:
            charts[r.run_id].append(b.chart)
    origin_of = {r.run_id: o for r, o in zip(runs, origins, strict=True)}
    ids_by_start = [str(r) for r in data.runs["run_id"].to_list()] if data.runs.height else []
    detailed = {r.run_id for r in runs}
    return Page(
        header=Header(
            title=title or "Training report",
            store_path=data.store_path,
            runs=data.runs.height,
            detailed=len(runs),
            generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            schema_version=data.schema_version,
            package_version=_package_version(),
        ),
        findings=[
            _findings(data, run_id, origin_of.get(run_id), evidence.index(charts.get(run_id, [])))
            for run_id in ids_by_start
            if run_id in detailed or data.findings.get(run_id)
        ],
        overview=[_overview(row, data) for row in data.runs.to_dicts()],
        curves=[c for c in curves if c.charts or (overlay and c.note)],
        gradients=[g for g in grads if g.charts],
        without_curves=[
            c.name
            for c in curves
            if not c.charts and not any(c.run_id in o.run_ids for o in overlay)
        ],
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
        overlay=[o.chart for o in overlay],
        weights=[w for w in weights if w.charts],
        without_weights=[w.name for w in weights if not w.charts],
        system=[s for s in system if s.charts],
        without_system=[
            s.name
            for s in system
            if not s.charts and not any(s.run_id in o.run_ids for o in system_overlay)
        ],
        mattered=mattered.block(data.mattered, ids),
        comparison=figures.comparison(data.comparison, ids),
        gradient_rows=multiples.rows(grads, names) if several else [],
        weight_rows=multiples.rows(weights, names) if several else [],
        activation_rows=multiples.rows(acts, names) if several else [],
        system_overlay=[o.chart for o in system_overlay],
        model_groups=internals.shared([m for m in models if m is not None]),
        image_columns=image_columns,
        inputs=[i for i in fed if i.charts],
        without_inputs=[i.name for i in fed if not i.charts],
        input_rows=multiples.rows(fed, names) if several else [],
        predictions=[p for p in predicted if p.charts],
        without_predictions=[p.name for p in predicted if not p.charts],
        prediction_rows=multiples.rows(predicted, names) if several else [],
    )


IMAGE_COLUMNS = 8
"""Several runs: panels per row of a feature-map grid, so two modules' grids share a row."""


def _overlaid_only(run: RunData, overlay: list[Overlaid]) -> RunCharts:
    """A run whose curves are all on the overlays: no charts of its own, its budget note only."""
    left_out = run.metrics_left_out
    note = left_out.note(run.run_id) if left_out is not None else None
    return RunCharts(run.run_id, display_name(run.name, run.run_id), [], note)


def _package_version() -> str:
    try:
        return metadata.version("telemetry")
    except metadata.PackageNotFoundError:
        return "unknown"


def _findings(
    data: ReportData, run_id: str, origin: OriginBox | None, charts: dict[str, Chart]
) -> RunFindings:
    found = data.findings.get(run_id, [])
    rows = []
    for f, depth in _causes_first(found):
        shown = evidence.links(charts, f.rule, f.subject)
        rows.append(
            FindingRow(
                severity=f.severity.value if f.severity.value in SEVERITIES else "info",
                rule=f.rule,
                subject=f.subject or "",
                step="" if f.step is None else str(f.step),
                message=f.message,
                suggestion=f.suggestion,
                origin=origin if f.rule == NONFINITE_RULE else None,
                evidence=shown[0] if shown else None,
                more_evidence=tuple(shown[1:]),
                caused_by=(f.caused_by or "") if depth else "",
                depth=depth,
            )
        )
    counts = {s: sum(r.severity == s for r in rows) for s in SEVERITIES}
    skipped = [(n.rule, n.reason) for n in data.not_evaluated.get(run_id, [])]
    name = _name_of(data, run_id)
    return RunFindings(run_id, display_name(name, run_id), rows, skipped, counts)


def _causes_first(found: list[Finding]) -> list[tuple[Finding, int]]:
    """Each finding with its depth, every consequence right under its cause
    (``Finding.caused_by``, ``analysis.causes``); the order is kept otherwise."""
    keys = {f.key for f in found}
    under: dict[str | None, list[Finding]] = {}
    for f in found:
        if f.caused_by in keys:
            under.setdefault(f.caused_by, []).append(f)
    out: list[tuple[Finding, int]] = []

    def add(f: Finding, depth: int) -> None:
        out.append((f, depth))
        for consequence in under.get(f.key, []):
            add(consequence, depth + 1)

    for f in found:
        if f.caused_by not in keys:
            add(f, 0)
    return out


def _name_of(data: ReportData, run_id: str) -> str:
    for r in data.per_run:
        if r.run_id == run_id:
            return r.name
    match = data.runs.filter(data.runs["run_id"] == run_id)["name"].to_list()
    return str(match[0]) if match and match[0] else run_id


def _overview(row: dict[str, Any], data: ReportData) -> OverviewRow:
    steps = row.get("steps")
    run_id = str(row.get("run_id") or "")
    metrics = data.val.get(run_id, [])
    found = data.findings.get(run_id, [])
    counts = [(s, sum(f.severity.value == s for f in found)) for s in SEVERITIES]
    first = metrics[0] if metrics else None
    return OverviewRow(
        name=str(row.get("name") or ""),
        run_id=run_id,
        status=str(row.get("status") or ""),
        steps="" if steps is None else f"{steps:,}",
        duration=format_duration(row.get("duration_s")),
        config=_cut(config_items(row.get("config")), MAX_CONFIG),
        error=str(row.get("error") or ""),
        best=_cut([_metric(m, m.best) for m in metrics], MAX_LISTED),
        final=_cut([_metric(m, m.final) for m in metrics], MAX_LISTED),
        findings=", ".join(
            f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts if n
        ),
        sort={
            "steps": "" if steps is None else str(steps),
            "duration": _number(row.get("duration_s")),
            "best": "" if first is None else _number(first.best),
            "final": "" if first is None else _number(first.final),
            "findings": str(sum(n * 1000 ** (2 - i) for i, (_, n) in enumerate(counts))),
        },
    )


def _cut(items: list[str], n: int) -> list[str]:
    """The first ``n`` of ``items``, and ``… and 1,980 more`` when there were more."""
    return items if len(items) <= n else [*items[:n], f"… and {len(items) - n:,} more"]


def _plural(n: int, severity: str) -> str:
    return "s" if n != 1 and severity != "info" else ""


def _metric(m: Metric, value: float | None) -> str:
    if value is None:
        return m.name
    if math.isnan(value):
        return f"{m.name} NaN"
    if math.isinf(value):
        return f"{m.name} {'+Inf' if value > 0 else '-Inf'}"
    return f"{m.name} {value:.4g}"


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


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
