"""What the report reads from a store: the only module of ``reports`` that talks to analysis.

All SQL text of the report lives here, as queries over the store's views
(``scalars``, ``tensors``, ``modules``, ``activations``, ``samples``, ``events``,
``exports``),
one run at a time. The results are shaped into small frames that the chart
functions draw without further thought:

* a run's charts stay within its share of the page's budget (``reports.budget``): the
  metrics with curves (``reports.metrics``), the lines of a chart, its points and its
  marks; what is left out is counted for the page to name;
* long series are decimated (``reports.decimate``) and say so;
* activation statistics become bounded module x step grids (``reports.heatmap``),
  and feature maps and filters small per-map byte grids (``reports.samples``);
* values Vega-Lite cannot plot are cut out into a separate *marker* frame with a
  ``label`` (``reports.series``), so a chart shows a red mark where a naive chart
  would leave a silent gap.

When a run was recorded by several ranks, the lowest rank present is drawn: with
data-parallel training the ranks see the same gradients and log the same metrics.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from reports import (
    activations,
    comparison,
    metrics,
    samples,
    step_norms,
    system,
    tensors,
)
from reports.activations import Activations
from reports.budget import MAX_CHARTED_RUNS, Budget
from reports.comparison import Comparison, Metric
from reports.defaults import MAX_RUNS
from reports.heatmap import Heatmap
from reports.metrics import Choice
from reports.origin import NanOrigin, first_origin
from reports.samples import WHAT, SampleSet
from reports.series import Series, series
from reports.step_norms import StepNorms
from reports.system import System
from reports.tensors import Bands, Weights
from store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from analysis import Diagnosis, Finding, NotEvaluated, Store

log = logging.getLogger(__name__)

# The names first: a run may log a thousand metrics, and only the chosen are read.
_SCALAR_NAMES = """
SELECT DISTINCT name, split
FROM scalars
WHERE run_id = $run_id
ORDER BY name, split NULLS LAST
"""

# One point per (name, split, step): the mean of its rows, as the rules read a curve
# (analysis/macros/curves.sql). Gradient accumulation logs a row per micro-batch, and
# drawing each one would zigzag the curve. A NaN or Inf among them stays in the mean,
# so the step becomes a marker downstream.
_SCALARS = """
WITH s AS (
    SELECT name, split, step, epoch, value, seq
    FROM scalars
    WHERE run_id = $run_id
        AND (list_contains($names::VARCHAR[], name) OR name = 'lr' OR starts_with(name, 'lr.group'))
    QUALIFY rank = min(rank) OVER (PARTITION BY name, split)
)
SELECT name, split, step, min(epoch) AS epoch, avg(value) AS value
FROM s
GROUP BY name, split, step
ORDER BY name, split NULLS LAST, step, min(seq)
"""

_GRADIENTS = """
SELECT param, step, seq, norm, mean, std, min, max
FROM tensors
WHERE run_id = $run_id AND kind = 'grad'
QUALIFY rank = min(rank) OVER ()
ORDER BY step, seq
"""

# ||update|| / ||weight|| per parameter and sampled step, next to the weight norm. max()
# keeps a NaN (DuckDB orders it above every number), so it becomes a marker downstream.
_WEIGHTS = """
WITH t AS (
    SELECT param, kind, step, seq, norm
    FROM tensors
    WHERE run_id = $run_id AND kind IN ('weight', 'update')
    QUALIFY rank = min(rank) OVER ()
)
SELECT param, step, min(seq) AS seq,
       max(norm) FILTER (WHERE kind = 'weight') AS weight,
       max(norm) FILTER (WHERE kind = 'update') AS "update"
FROM t
GROUP BY param, step
ORDER BY step, seq
"""

# A row per optimizer step: the timing columns are null on a step that could not be timed,
# the gradient norms (issue 16) on one without gradients and in stores written before them.
_SYSTEM = """
SELECT step, step_time_s, data_time_s, compute_time_s, samples_per_s,
       grad_norm, grad_norm_step, clip_ratio
FROM system
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER ()
ORDER BY step, seq
"""

# Every run's validation metrics (the run comparison and the runs table): best and final.
_VAL_METRICS = """
SELECT s.run_id, s.name AS metric,
       min(s.value) FILTER (WHERE isfinite(s.value)) AS lowest,
       max(s.value) FILTER (WHERE isfinite(s.value)) AS highest,
       arg_max(s.value, s.step) AS final,
       count(*) AS n,
       any_value(g.goal) AS goal
FROM scalars s LEFT JOIN metric_goals g USING (run_id, name)
WHERE s.split = 'val'
GROUP BY s.run_id, s.name
ORDER BY s.run_id, s.name
"""

_MODULES = """
SELECT module, module_type, parent, depth, params, own_params, trainable_params, calls,
       input_shape, output_shape
FROM modules
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER ()
ORDER BY seq
"""

# A module called twice in one forward (shared weights) has two rows per step: the
# first call is the one in forward order.
_ACTIVATIONS = """
SELECT module, module_type, step, seq, std, zero_frac, dead_frac, saturated_frac
FROM activations
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER ()
    AND row_number() OVER (PARTITION BY rank, step, module ORDER BY seq) = 1
ORDER BY step, seq
"""

_SAMPLED = """
WITH s AS (
    SELECT module, what, step, seq, shape, dtype, data, lo, hi
    FROM samples
    WHERE run_id = $run_id
    QUALIFY rank = min(rank) OVER ()
        AND row_number() OVER (PARTITION BY rank, module, what, step ORDER BY seq) = 1
)
"""

_SAMPLE_INDEX = (
    _SAMPLED
    + """
SELECT module, what, list(step ORDER BY step) AS steps, min(seq) AS first_seq,
       arg_max(shape, step) AS shape
FROM s GROUP BY module, what
ORDER BY first_seq
"""
)

_SAMPLE_IMAGES = (
    _SAMPLED
    + """
SELECT s.module, s.what, s.step, s.shape, s.dtype, s.data, s.lo, s.hi
FROM s
JOIN (SELECT module, what, min(step) AS first_step, max(step) AS last_step
      FROM s GROUP BY module, what) b USING (module, what)
WHERE s.step = b.first_step OR s.step = b.last_step
ORDER BY s.step
"""
)

_NAN_ORIGIN = """
SELECT step, payload
FROM events
WHERE run_id = $run_id AND kind = 'nonfinite_origin'
ORDER BY step, attempt, seq
"""

# The run's latest export benchmark (a run benchmarked twice shows its last one; the
# same choice as the export rules: analysis/macros/exports.sql), as written: one row per
# format and batch size, and one per format that failed outright.
_EXPORTS = """
SELECT format, batch_size, status, error, latency_p50_ms, latency_p90_ms, throughput,
       latency_ci_low_ms, latency_ci_high_ms, size_bytes, load_time_ms, max_abs_diff,
       max_rel_diff, metric_name, metric_value, sparsity, device, threads, env, step
FROM latest_exports()
WHERE run_id = $run_id
ORDER BY seq
"""

DEFAULT_BAND = (1e-5, 0.1)
"""The healthy update/weight band when the update_ratio rule cannot be read."""

MAX_SAMPLED_MODULES = 6
"""Sampled tensors (module x feature maps/filters) drawn per run, filters first."""


@dataclass(frozen=True)
class RunData:
    """Everything drawn for one run. Empty dicts and None mean "not recorded"."""

    run_id: str
    name: str
    metrics: dict[str, Series] = field(default_factory=dict)
    """Metric name -> series with columns split, step, value, and epoch when the run logs one."""
    lr: Series | None = None
    """Learning rate per param group: name, step, value."""
    layer_norms: Series | None = None
    """Per-parameter gradient norm: param, step, norm (markers: non-finite and zero)."""
    param_order: list[str] = field(default_factory=list)
    """Parameters by depth: their order (``seq``) within the first step they appear."""
    global_norm: Series | None = None
    """sqrt of the sum of squared per-parameter norms per step: step, norm, params."""
    step_norms: StepNorms | None = None
    """The global gradient norm of every optimizer step, before clipping and as stepped with
    (the ``system`` stream's ``grad_norm``, ``grad_norm_step``): line, step, norm."""
    grad_heatmap: Heatmap | None = None
    """Gradient norm per parameter (``module`` column) and step bucket, log colour."""
    grad_bands: Bands | None = None
    weights: Weights | None = None
    system: System | None = None
    modules: pl.DataFrame | None = None
    """The model summary in registration order (the ``modules`` view's columns)."""
    activations: Activations | None = None
    samples: list[SampleSet] = field(default_factory=list)
    samples_left_out: int = 0
    """Sampled module/kind pairs beyond ``MAX_SAMPLED_MODULES``."""
    nan_origin: NanOrigin | None = None
    exports: pl.DataFrame | None = None
    """The latest export benchmark's rows (the ``exports`` view's columns), in written order."""
    metrics_left_out: Choice | None = None
    """The metrics chosen for curves, when there were more than the budget draws."""
    budget: Budget = field(default_factory=Budget)
    """This run's share of the page's budget (what the page builders may add)."""


@dataclass(frozen=True)
class ReportData:
    """The whole report's input: runs, their findings, and what to draw for each."""

    store_path: str
    runs: pl.DataFrame
    findings: dict[str, list[Finding]]
    not_evaluated: dict[str, list[NotEvaluated]]
    per_run: list[RunData]
    schema_version: int = SCHEMA_VERSION
    val: dict[str, list[Metric]] = field(default_factory=dict)
    """Every run's validation metrics (best and final), by run id."""
    comparison: Comparison | None = None
    """Every run of the diagnosis: hyperparameters against the best validation metric."""
    left_out: int = 0
    """Runs of the selection without per-run sections (beyond ``max_runs``)."""


def load(
    store: Store,
    diagnosis: Diagnosis,
    *,
    max_runs: int | None = MAX_RUNS,
    budget: Budget = Budget(),  # noqa: B008 (frozen: one shared default is safe)
) -> ReportData:
    """Read what the report draws for the runs of ``diagnosis`` (all of them, in its order).

    Per-run sections are read for the ``max_runs`` most recently started runs (all of
    them with None, up to ``MAX_CHARTED_RUNS``), each within its share of ``budget``;
    the runs table, findings and comparison cover every run of the diagnosis (the whole
    store unless runs were selected).
    """
    if max_runs is not None and max_runs < 1:
        raise ValueError(f"max_runs must be at least 1 (or None for all runs), got {max_runs}")
    runs = diagnosis.runs
    ids = [str(r) for r in runs["run_id"].to_list()] if runs.height else []
    findings: dict[str, list[Finding]] = {r: [] for r in ids}
    for f in diagnosis.findings:
        if f.run_id in findings:
            findings[f.run_id].append(f)
    skipped: dict[str, list[NotEvaluated]] = {r: [] for r in ids}
    for n in diagnosis.not_evaluated:
        if n.run_id in skipped:
            skipped[n.run_id].append(n)
    names = [str(n) for n in runs["name"].to_list()] if runs.height else []
    limit = MAX_CHARTED_RUNS if max_runs is None else min(max_runs, MAX_CHARTED_RUNS)
    chosen = set(_recent(runs, limit))
    share = budget.share(len(chosen))
    per_run = [
        _run_data(store, run_id, name, share, findings[run_id])
        for run_id, name in zip(ids, names, strict=True)
        if run_id in chosen
    ]
    val = comparison.val_metrics(store.sql(_VAL_METRICS)) if ids else {}
    val = {r: m for r, m in val.items() if r in findings}
    return ReportData(
        str(store.path),
        runs,
        findings,
        skipped,
        per_run,
        val=val,
        comparison=comparison.compare(runs, val) if ids else None,
        left_out=len(ids) - len(per_run),
    )


def _recent(runs: pl.DataFrame, max_runs: int) -> list[str]:
    """The run ids of the ``max_runs`` most recently started runs."""
    if not runs.height:
        return []
    if runs.height <= max_runs:
        return [str(r) for r in runs["run_id"].to_list()]
    if "started_at" not in runs.columns:
        return [str(r) for r in runs["run_id"].to_list()[-max_runs:]]
    latest = runs.sort("started_at", "run_id", nulls_last=False).tail(max_runs)
    return [str(r) for r in latest["run_id"].to_list()]


def _run_data(
    store: Store, run_id: str, name: str, budget: Budget, findings: list[Finding]
) -> RunData:
    subjects = [f.subject for f in findings]
    curves, lr, choice = _curves(store, run_id, budget, subjects)
    grads = store.sql(_GRADIENTS, {"run_id": run_id})
    gradients = tensors.gradients(grads, budget, subjects) if grads.height else None
    drawn = gradients.drawn if gradients is not None else []
    modules = store.sql(_MODULES, {"run_id": run_id})
    sample_sets, left_out = _samples(store, run_id, budget)
    steps = store.sql(_SYSTEM, {"run_id": run_id})
    return RunData(
        run_id,
        name,
        curves,
        lr,
        layer_norms=gradients.lines if gradients else None,
        param_order=gradients.order if gradients else [],
        global_norm=gradients.global_norm if gradients else None,
        grad_heatmap=gradients.heatmap if gradients else None,
        grad_bands=gradients.bands if gradients else None,
        metrics_left_out=choice if choice.left_out else None,
        budget=budget,
        modules=modules if modules.height else None,
        activations=_activations(store, run_id, budget),
        samples=sample_sets,
        samples_left_out=left_out,
        nan_origin=_nan_origin(store, run_id),
        exports=_exports(store, run_id),
        weights=tensors.weights(
            store.sql(_WEIGHTS, {"run_id": run_id}),
            band=_update_band(),
            budget=budget,
            first=drawn,
        ),
        system=system.summarize(steps, budget=budget),
        step_norms=step_norms.summarize(steps, budget=budget),
    )


def _curves(
    store: Store, run_id: str, budget: Budget, subjects: list[str | None]
) -> tuple[dict[str, Series], Series | None, Choice]:
    """The metrics chosen for curves (and which were left out), and the learning rate."""
    pairs = store.sql(_SCALAR_NAMES, {"run_id": run_id}).iter_rows()
    splits: dict[str, int] = {}
    for name, split in pairs:
        if not _is_lr(name, split):
            splits[name] = splits.get(name, 0) + 1
    named = metrics.named_by(subjects, splits)
    choice = metrics.choose(splits, limit=budget.metric_charts, named=named)
    scalars = store.sql(_SCALARS, {"run_id": run_id, "names": choice.drawn})
    lr_rows = scalars.filter(_LR)
    by_name = scalars.filter(~_LR).partition_by("name", as_dict=True, include_key=False)
    # An epoch on every row costs a sixth of a curve's bytes; most runs log none.
    if scalars["epoch"].null_count() == scalars.height:
        by_name = {k: v.drop("epoch") for k, v in by_name.items()}
    # The curves share their points; a metric's splits share its part.
    per_chart = budget.curve_points // max(1, len(choice.drawn))
    curves = {
        metric: series(
            by_name[(metric,)],
            value="value",
            by=["split"],
            max_points=min(budget.series, per_chart),
            budget=per_chart,
            max_lines=budget.lines,
            line_kind="splits",
            max_markers=budget.markers,
        )
        for metric in choice.drawn
        if (metric,) in by_name
    }
    lr = None
    if lr_rows.height:
        lr = series(
            lr_rows.select("name", "step", "value"),
            value="value",
            by=["name"],
            max_points=budget.series,
            budget=budget.series,
            max_lines=budget.lines,
            line_kind="parameter groups",
            max_markers=budget.markers,
        )
    return curves, lr, choice


# The collector logs the optimizer's lr as `lr`, `lr.group1`, ... with split train.
_LR_NAME = pl.col("name").eq("lr") | pl.col("name").str.starts_with("lr.group")
_LR = _LR_NAME & pl.col("split").eq("train").fill_null(False)


def _is_lr(name: str, split: str | None) -> bool:
    """``_LR`` for one (name, split) pair."""
    return split == "train" and (name == "lr" or name.startswith("lr.group"))


@functools.lru_cache(maxsize=1)
def _update_band() -> tuple[float, float]:
    """The update_ratio rule's [low, high]: the chart shades what the rule accepts."""
    from analysis import load_rules

    rule = next((r for r in load_rules() if r.id == "update_ratio"), None)
    if rule is None:
        return DEFAULT_BAND
    return float(rule.params.get("low", DEFAULT_BAND[0])), float(
        rule.params.get("high", DEFAULT_BAND[1])
    )


def _activations(store: Store, run_id: str, budget: Budget) -> Activations | None:
    acts = store.sql(_ACTIVATIONS, {"run_id": run_id})
    return activations.summarize(acts, budget=budget) if acts.height else None


def _samples(store: Store, run_id: str, budget: Budget) -> tuple[list[SampleSet], int]:
    """Filters first, then feature maps in forward order: at most MAX_SAMPLED_MODULES, and
    as many as ``budget.pixels`` holds (``reports.samples.fit``)."""
    index = store.sql(_SAMPLE_INDEX, {"run_id": run_id})
    if not index.height:
        return [], 0
    rank = {w: i for i, w in enumerate(WHAT)}
    groups = sorted(
        index.iter_rows(named=True), key=lambda r: (rank.get(r["what"], len(rank)), r["first_seq"])
    )
    drawn, max_maps = samples.fit(groups[:MAX_SAMPLED_MODULES], budget.pixels)
    rows = store.sql(_SAMPLE_IMAGES, {"run_id": run_id}).iter_rows(named=True)
    return samples.sets(drawn, rows, max_maps=max_maps), len(groups) - len(drawn)


def _exports(store: Store, run_id: str) -> pl.DataFrame | None:
    rows = store.sql(_EXPORTS, {"run_id": run_id})
    return rows if rows.height else None


def _nan_origin(store: Store, run_id: str) -> NanOrigin | None:
    events = store.sql(_NAN_ORIGIN, {"run_id": run_id}).iter_rows()
    return first_origin(events, run_id=run_id)
