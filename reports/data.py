"""What the report reads from a store: the only module of ``reports`` that talks to analysis.

All SQL text of the report lives here, as queries over the store's views
(``scalars``, ``tensors``), one run at a time. The results are shaped into small
frames that the chart functions draw without further thought:

* long series are decimated (``reports.decimate``) and say so;
* values Vega-Lite cannot plot are cut out into a separate *marker* frame with a
  ``label`` ("NaN", "+Inf", "-Inf", "null", and "0" on a log scale), so a chart
  shows a red mark where a naive chart would leave a silent gap.

When a run was recorded by several ranks, the lowest rank present is drawn: with
data-parallel training the ranks see the same gradients and log the same metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from collector.schema import SCHEMA_VERSION
from reports.decimate import MAX_POINTS, decimate, note

if TYPE_CHECKING:
    from analysis import Diagnosis, Finding, NotEvaluated, Store

log = logging.getLogger(__name__)

LABEL = "label"
"""Column of a marker frame: why the value could not be drawn."""

PREFERRED_METRICS = ("loss", "acc", "accuracy")
"""Drawn first, in this order; other metrics follow alphabetically."""

SIG_DIGITS = 6
"""Values are drawn with this many significant digits (decimation picks on full precision)."""

CHART_BUDGET = 20_000
"""Points one chart may draw across its series before each series gets fewer than MAX_POINTS."""

MIN_PER_SERIES = 100
"""Floor of the per-series share of CHART_BUDGET: a line keeps its shape at this many."""

_SCALARS = """
SELECT name, split, step, epoch, value
FROM scalars
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER (PARTITION BY name, split)
ORDER BY name, split NULLS LAST, step, seq
"""

_GRADIENTS = """
SELECT param, step, seq, norm
FROM tensors
WHERE run_id = $run_id AND kind = 'grad'
QUALIFY rank = min(rank) OVER ()
ORDER BY step, seq
"""


@dataclass(frozen=True)
class Series:
    """One chart's worth of data: drawable points, markers for the rest, and counts.

    ``points`` holds the rows whose value can be drawn; ``markers`` holds the
    other rows with the value replaced by ``label``. ``drawn`` counts both after
    decimation, ``total`` counts the rows read.
    """

    points: pl.DataFrame
    markers: pl.DataFrame
    drawn: int
    total: int

    @property
    def note(self) -> str | None:
        """The sentence under a decimated chart, or None when every point is drawn."""
        return note(self.drawn, self.total)


@dataclass(frozen=True)
class RunData:
    """Everything drawn for one run. Empty dicts and None mean "not recorded"."""

    run_id: str
    name: str
    metrics: dict[str, Series] = field(default_factory=dict)
    """Metric name -> series with columns split, step, epoch, value."""
    lr: Series | None = None
    """Learning rate per param group: name, split, step, epoch, value."""
    layer_norms: Series | None = None
    """Per-parameter gradient norm: param, step, norm (markers: non-finite and zero)."""
    param_order: list[str] = field(default_factory=list)
    """Parameters by depth: their order (``seq``) within the first step they appear."""
    global_norm: Series | None = None
    """sqrt of the sum of squared per-parameter norms per step: step, norm, params."""


@dataclass(frozen=True)
class ReportData:
    """The whole report's input: runs, their findings, and what to draw for each."""

    store_path: str
    runs: pl.DataFrame
    findings: dict[str, list[Finding]]
    not_evaluated: dict[str, list[NotEvaluated]]
    per_run: list[RunData]
    schema_version: int = SCHEMA_VERSION


def load(store: Store, diagnosis: Diagnosis, *, max_points: int = MAX_POINTS) -> ReportData:
    """Read what the report draws for the runs of ``diagnosis`` (all of them, in its order)."""
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
    per_run = [
        _run_data(store, run_id, name, max_points=max_points)
        for run_id, name in zip(ids, names, strict=True)
    ]
    return ReportData(str(store.path), runs, findings, skipped, per_run)


def _run_data(store: Store, run_id: str, name: str, *, max_points: int) -> RunData:
    scalars = store.sql(_SCALARS, {"run_id": run_id})
    # The collector logs the optimizer's lr as `lr`, `lr.group1`, ... with split train.
    lr_name = pl.col("name").eq("lr") | pl.col("name").str.starts_with("lr.group")
    is_lr = lr_name & pl.col("split").eq("train").fill_null(False)
    lr_rows = scalars.filter(is_lr)
    metric_rows = scalars.filter(~is_lr)
    metrics = {
        metric: series(
            metric_rows.filter(pl.col("name") == metric).drop("name"),
            value="value",
            by=["split"],
            max_points=max_points,
        )
        for metric in _metric_order(metric_rows["name"].unique().to_list())
    }
    lr = (
        series(lr_rows, value="value", by=["name"], max_points=max_points)
        if lr_rows.height
        else None
    )
    grads = store.sql(_GRADIENTS, {"run_id": run_id})
    if not grads.height:
        return RunData(run_id, name, metrics, lr)
    order = param_order(grads)
    layers = series(
        grads.select("param", "step", "norm"),
        value="norm",
        by=["param"],
        positive=True,
        max_points=max_points,
    )
    total = global_norm(grads)
    return RunData(
        run_id,
        name,
        metrics,
        lr,
        layer_norms=layers,
        param_order=order,
        global_norm=series(total, value="norm", positive=True, max_points=max_points),
    )


def _metric_order(names: Sequence[str]) -> list[str]:
    first = [m for m in PREFERRED_METRICS if m in names]
    return first + sorted(m for m in names if m not in PREFERRED_METRICS)


def param_order(grads: pl.DataFrame) -> list[str]:
    """Parameters by depth: first step they appear in, then ``seq`` within that step."""
    firsts = grads.group_by("param").agg(
        pl.col("step").min().alias("first_step"),
        pl.col("seq").sort_by("step", "seq").first().alias("first_seq"),
    )
    return [str(p) for p in firsts.sort("first_step", "first_seq")["param"].to_list()]


def global_norm(grads: pl.DataFrame) -> pl.DataFrame:
    """The global gradient norm per step, over the parameters recorded at that step.

    A NaN or Inf in any parameter's norm makes the step's global norm NaN/Inf on
    purpose: it becomes a marker instead of vanishing from the line.
    """
    return (
        grads.group_by("step")
        .agg((pl.col("norm") ** 2).sum().sqrt().alias("norm"), pl.len().alias("params"))
        .sort("step")
    )


def series(
    df: pl.DataFrame,
    *,
    value: str,
    by: Sequence[str] = (),
    positive: bool = False,
    max_points: int = MAX_POINTS,
) -> Series:
    """Decimate ``df`` per series (rows sharing ``by``, ordered by ``step``), then cut out markers.

    ``positive`` is for log-scale charts: values <= 0 cannot be drawn there, so they
    become markers too (a gradient norm of exactly 0 is a finding, not a gap).
    """
    # A chart of many series (a deep model's parameters) shares one budget, so a
    # chart stays a few MB at most; a single series still gets max_points.
    n_series = df.select(by).n_unique() if by and df.height else 1
    per_series = min(max_points, max(MIN_PER_SERIES, CHART_BUDGET // n_series))
    reduced = decimate(df, x="step", y=value, by=by, max_points=per_series)
    points, markers = split_drawable(reduced.frame, value=value, positive=positive)
    # 17-digit floats are most of a report's bytes; 6 significant digits are finer
    # than any axis or tooltip (4 digits) shows, and halve the size.
    points = points.with_columns(pl.col(value).round_sig_figs(SIG_DIGITS))
    return Series(points, markers, reduced.drawn, reduced.total)


def split_drawable(
    df: pl.DataFrame, *, value: str, positive: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows Vega-Lite can draw, and the others as markers with ``value`` replaced by a label.

    Vega-Lite drops NaN and null silently (and JSON cannot even carry NaN/Inf), so
    the non-finite rows must leave the data before the chart sees them.
    """
    v = pl.col(value)
    drawable = v.is_finite().fill_null(False)
    if positive:
        drawable = drawable & (v > 0)
    label = (
        pl.when(v.is_null())
        .then(pl.lit("null"))
        .when(v.is_nan())
        .then(pl.lit("NaN"))
        .when(v.is_infinite() & (v > 0))
        .then(pl.lit("+Inf"))
        .when(v.is_infinite())
        .then(pl.lit("-Inf"))
        .when(v == 0)
        .then(pl.lit("0 (off the log scale)"))
        .otherwise(pl.lit("negative (off the log scale)"))
    )
    markers = df.filter(~drawable).with_columns(label.alias(LABEL)).drop(value)
    return df.filter(drawable), markers
