"""What the report reads from a store: every read of ``reports`` starts here.

The SQL of the report is run from here: the queries of ``reports.queries`` (one
``.sql`` file each, with the decimation that ``reports.decimate.decimate_sql`` wraps
around some of them), over the store's
views (``scalars``, ``tensors``, ``system``, ``modules``, ``activations``, ``samples``,
``events``, ``exports``), one run at a time; or from the ``read`` of a section's own
module, called from here (``reports.inputs``, ``reports.memory``, ``reports.predictions``:
views ``inputs``, ``system``, ``events``, ``confusion``, ``residuals``; ``reports.sweep``:
``analysis.sweep`` and the ``sweep_of`` macro, over every run), which keeps
this module from growing. The results are shaped into small frames
that the chart functions draw without further thought:

* a run's charts stay within its share of the page's budget (``reports.budget``): the
  metrics with curves (``reports.metrics``), the lines of a chart, its points and its
  marks; what is left out is counted for the page to name;
* long series are decimated (``reports.decimate``) and say so. Curves, gradients,
  weights and step timing are reduced by the database, so what a run sends to Python is
  bounded by its budget, not by its length (a run of 100k steps x 60 parameters holds
  18M tensors rows): the queries plan on a small first answer (the metrics, the
  parameters by depth), then return only the rows drawn and the counts the notes need.
  The Polars functions of ``reports.tensors``, ``reports.system`` and
  ``reports.step_norms`` do the same from every row, and the tests hold the two equal;
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from reports import (
    activations,
    comparison,
    heatmap,
    inputs,
    memory,
    metrics,
    predictions,
    samples,
    step_norms,
    sweep,
    system,
    tensors,
)
from reports.activations import Activations
from reports.budget import MAX_CHARTED_RUNS, Budget
from reports.comparison import Comparison, Metric
from reports.decimate import decimate_sql, decimated
from reports.defaults import MAX_RUNS
from reports.heatmap import Heatmap
from reports.inputs import Inputs
from reports.memory import Memory
from reports.metrics import Choice
from reports.origin import NanOrigin, first_origin
from reports.predictions import Predictions
from reports.queries import query
from reports.samples import WHAT, SampleSet
from reports.series import (
    Series,
    points_per_line,
    shaped,
    split_drawable,
)
from reports.step_norms import StepNorms
from reports.sweep import Mattered
from reports.system import System
from reports.tensors import Bands, Gradients, Weights
from store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from analysis import Diagnosis, Finding, NotEvaluated, Store

log = logging.getLogger(__name__)

_SCALAR_NAMES = query("scalar_names")
_SCALARS = query("scalars")
_GRADS = query("grads")
_GRAD_PARAMS = _GRADS + query("grad_params")
_GRAD_LINES = query("grad_lines")
_GRAD_GRIDS = query("grad_grids")
_GRAD_GRID_ROWS = query("grad_grid_rows")
_WEIGHT_LINES = query("weight_lines")
_SYSTEM = query("system")
_VAL_METRICS = query("val_metrics")
_MODULES = query("modules")
_ACTIVATIONS = query("activations")
_SAMPLED = query("sampled")
_SAMPLE_INDEX = _SAMPLED + query("sample_index")
_SAMPLE_IMAGES = _SAMPLED + query("sample_images")
_NAN_ORIGIN = query("nan_origin")
_EXPORTS = query("exports")

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
    memory: Memory | None = None
    """Peak memory over steps against the device's total (``reports.memory``)."""
    inputs: Inputs | None = None
    """The model's input per feature or channel (``reports.inputs``)."""
    predictions: Predictions | None = None
    """Confusion matrices, per-class recall, regression errors (``reports.predictions``)."""
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
    mattered: Mattered | None = None
    """Every run of the diagnosis: which hyperparameters explain the comparison's metric
    (``reports.sweep``); None when the runs share one config."""


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
    the runs table, findings, comparison and what mattered (``reports.sweep``) cover every
    run of the diagnosis (the whole store unless runs were selected).
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
    compared = comparison.compare(runs, val) if ids else None
    # Several runs: which of their hyperparameters explain the metric compared.
    mattered = sweep.read(store, ids, comparison=compared, budget=budget) if len(ids) > 1 else None
    return ReportData(
        str(store.path),
        runs,
        findings,
        skipped,
        per_run,
        val=val,
        comparison=compared,
        left_out=len(ids) - len(per_run),
        mattered=mattered,
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
    gradients = _gradients(store, run_id, budget, subjects)
    drawn = gradients.drawn if gradients is not None else []
    modules = store.sql(_MODULES, {"run_id": run_id})
    sample_sets, left_out = _samples(store, run_id, budget)
    timing, norms = _system(store, run_id, budget)
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
        weights=_weights(store, run_id, budget, drawn),
        system=timing,
        step_norms=norms,
        memory=memory.read(store, run_id, budget),
        inputs=inputs.read(store, run_id),
        predictions=predictions.read(store, run_id, budget),
    )


def _reduced(
    store: Store,
    source: str,
    params: dict[str, Any],
    *,
    y: str,
    by: Sequence[str] = (),
    ties: Sequence[str] = (),
    max_points: int | str,
    budget: Budget,
) -> pl.DataFrame:
    """The rows of ``source`` that its chart draws: decimated by the database
    (``reports.decimate.decimate_sql``), each series' first ``budget.markers`` non-finite
    rows kept and the rest counted, so that what is read is bounded by the budget."""
    sql, extra = decimate_sql(
        source,
        x="step",
        y=y,
        by=by,
        ties=ties,
        max_points=max_points,
        max_nonfinite=budget.markers,
    )
    return store.sql(sql, params | extra)


def _curves(
    store: Store, run_id: str, budget: Budget, subjects: list[str | None]
) -> tuple[dict[str, Series], Series | None, Choice]:
    """The metrics chosen for curves (and which were left out), and the learning rate."""
    pairs = store.sql(_SCALAR_NAMES, {"run_id": run_id}).iter_rows()
    splits: dict[str, list[str | None]] = {}
    groups: list[str] = []
    for name, split in pairs:
        if _is_lr(name, split):
            groups.append(name)
        else:
            splits.setdefault(name, []).append(split)
    counts = {name: len(s) for name, s in splits.items()}
    choice = metrics.choose(
        counts, limit=budget.metric_charts, named=metrics.named_by(subjects, counts)
    )
    # The curves share their points; a metric's splits share its part. The first lines
    # are drawn (``reports.series.series``: splits and groups appear in name order).
    per_chart = budget.curve_points // max(1, len(choice.drawn))
    plan: list[tuple[str, str | None, int]] = []
    for metric in choice.drawn:
        drawn = splits[metric][: budget.lines]
        n = points_per_line(len(drawn), max_points=min(budget.series, per_chart), budget=per_chart)
        plan += [(metric, split, n) for split in drawn]
    n = points_per_line(min(len(groups), budget.lines), max_points=budget.series)
    plan += [(group, "train", n) for group in groups[: budget.lines]]
    if not plan:
        return {}, None, choice
    names, chosen, points = (list(column) for column in zip(*plan, strict=True))
    params = {"run_id": run_id, "drawn": choice.drawn, "names": names, "splits": chosen}
    scalars = _reduced(
        store,
        _SCALARS,
        params | {"points": points},
        y="value",
        by=["name", "split"],
        max_points="points",
        budget=budget,
    )
    # An epoch on every row costs a sixth of a curve's bytes; most runs log none.
    columns = ["split", "step", "epoch", "value"]
    if not scalars.height or not scalars["epochs"][0]:
        columns.remove("epoch")
    by_name = scalars.filter(~_LR).partition_by("name", as_dict=True, include_key=False)
    curves = {
        metric: shaped(
            decimated(by_name[(metric,)], by=["split"], columns=columns),
            value="value",
            lines=min(len(splits[metric]), budget.lines),
            lines_total=len(splits[metric]),
            line_kind="splits",
            max_markers=budget.markers,
        )
        for metric in choice.drawn
        if (metric,) in by_name
    }
    lr_rows = scalars.filter(_LR)
    lr = None
    if lr_rows.height:
        lr = shaped(
            decimated(lr_rows, by=["name"], columns=["name", "step", "value"]),
            value="value",
            lines=min(len(groups), budget.lines),
            lines_total=len(groups),
            line_kind="parameter groups",
            max_markers=budget.markers,
        )
    return curves, lr, choice


def _gradients(
    store: Store, run_id: str, budget: Budget, subjects: list[str | None]
) -> Gradients | None:
    """``reports.tensors.gradients``, reduced by the database: the lines, global norm,
    heatmap and bands of the run's gradients, in one query planned on another."""
    run = {"run_id": run_id}
    ((order, steps),) = store.sql(_GRAD_PARAMS, run).rows()
    if not order:
        return None
    drawn = tensors.drawn_params(order, tensors.named_params(subjects, order), budget.lines)
    shown = order[: heatmap.bounds(budget)["max_rows"]]
    columns = heatmap.columns(steps, rows=len(shown), cell_budget=budget.cells)
    spread = tensors.spread(order)
    lines, decimating = decimate_sql(
        _GRAD_LINES,
        x="step",
        y="norm",
        by=["line"],
        ties=["seq"],
        max_points="points",
        max_nonfinite=budget.markers,
    )
    line_points = points_per_line(len(drawn), max_points=budget.series, budget=budget.line_points)
    params = (
        run
        | decimating
        | {
            "lines": drawn,
            "line_points": line_points,
            "global_points": points_per_line(1, max_points=budget.series),
            "shown": shown,
            "columns": columns,
            "spread": spread,
            "buckets": budget.band_buckets,
        }
    )
    sql = _GRADS + _GRAD_GRIDS + f"SELECT * FROM ({lines})" + _GRAD_GRID_ROWS
    charts = store.sql(sql, params).partition_by("chart", as_dict=True, include_key=False)
    cells = charts[("heatmap",)].rename({"param": "module"})
    cells = cells.with_columns(pl.lit("parameter").alias("module_type"))
    _, marked = split_drawable(cells.filter("bad"), value="norm", positive=True)
    bands = charts[("bands",)]
    return Gradients(
        order,
        drawn,
        shaped(
            decimated(charts[("norms",)], by=["param"], columns=["param", "step", "norm"]),
            value="norm",
            positive=True,
            lines=len(drawn),
            lines_total=len(order),
            line_kind=tensors.LINES,
            max_markers=budget.markers,
        ),
        shaped(
            decimated(charts[("global",)], columns=["step", "norm", "params"]),
            value="norm",
            positive=True,
            max_markers=budget.markers,
        ),
        heatmap.assemble(
            cells.filter(~pl.col("bad")),
            marked,
            value="norm",
            shown=shown,
            modules=len(order),
            steps=steps,
            columns=columns,
        ),
        tensors.banded(
            bands.filter(~pl.col("bad")),
            bands.filter("bad"),
            shown=spread,
            total_params=len(order),
            steps=int(bands["steps"][0]),
        ),
    )


def _weights(store: Store, run_id: str, budget: Budget, drawn: list[str]) -> Weights | None:
    """``reports.tensors.weights``, reduced by the database; ``drawn``: the parameters with
    a gradient line, drawn here first when there are more than ``budget.lines``."""
    points = [
        points_per_line(n, max_points=budget.series, budget=budget.line_points)
        for n in range(1, budget.lines + 1)
    ]
    params = {"run_id": run_id, "first": drawn, "max_lines": budget.lines, "points": points}
    lines, decimating = decimate_sql(
        _WEIGHT_LINES,
        x="step",
        y="value",
        by=["line"],
        ties=["seq"],
        max_points="points",
        max_nonfinite=budget.markers,
    )
    sql = f"SELECT * FROM ({lines}) ORDER BY chart, param, step, seq"
    rows = store.sql(sql, params | decimating)
    charts = rows.partition_by("chart", as_dict=True, include_key=False)

    def chart(name: str, value: str) -> Series | None:
        lines = charts.get((name,))
        if lines is None:
            return None
        kept = decimated(
            lines.rename({"value": value}), by=["param"], columns=["param", "step", value]
        )
        return shaped(
            kept,
            value=value,
            positive=True,
            lines=lines["param"].n_unique(),
            lines_total=int(lines["lines_total"][0]),
            line_kind=tensors.LINES,
            max_markers=budget.markers,
        )

    norms, ratio = chart("norms", "weight"), chart("ratios", "ratio")
    # A run with updates but no weights draws nothing either way: the page never told
    # Weights(None, None) from None.
    return Weights(norms, ratio, _update_band()) if norms or ratio else None


def _system(store: Store, run_id: str, budget: Budget) -> tuple[System | None, StepNorms | None]:
    """``reports.system.summarize`` and ``reports.step_norms.summarize``, reduced by the
    database: one query for the lines of the three charts."""
    params = {
        "run_id": run_id,
        "parts": list(system.PARTS),
        "norms": list(step_norms.LINES),
        "same": step_norms.SAME,
    }
    # A chart's one or two lines share CHART_BUDGET points, more than a line's maximum
    # (MAX_POINTS, and a run's share only divides it): each gets budget.series, as
    # system.summarize and step_norms.summarize give it.
    points = points_per_line(2, max_points=budget.series)
    rows = _reduced(
        store,
        _SYSTEM,
        params,
        y="value",
        by=["chart", "line"],
        ties=["seq"],
        max_points=points,
        budget=budget,
    )
    charts = rows.partition_by("chart", as_dict=True, include_key=False)

    def chart(name: str, key: str | None, value: str, **kwargs: Any) -> Series | None:
        lines = charts.get((name,))
        if lines is None:
            return None
        keys = [key] if key else []
        lines = lines.rename({"line": key or "line", "value": value})
        n = lines[key].n_unique() if key else 1
        reduced = decimated(lines, by=keys, columns=[*keys, "step", value])
        return shaped(reduced, value=value, lines=n, lines_total=n, **kwargs)

    time = chart("time", "part", "seconds", max_markers=budget.markers)
    rate = chart("throughput", None, "samples_per_s", max_markers=budget.markers)
    norms = chart(
        "norms",
        "line",
        "norm",
        positive=True,
        line_kind="norms",
        max_markers=budget.markers,
    )
    clipped, judged = (int(rows[c][0]) if rows.height else 0 for c in ("clipped", "judged"))
    return (
        System(time, rate) if time or rate else None,
        StepNorms(norms, clipped, judged) if norms else None,
    )


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
