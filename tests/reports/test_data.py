"""reports.data: what the report reads from a store, shaped for the charts."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from analysis import Diagnosis, Finding, NotEvaluated, Severity, open_store
from reports import data
from tests.builders import RunBuilder
from tests.reports.pages import open_diagnosed, trained


def test_nan_and_inf_loss_points_become_labelled_markers(tmp_path: Path) -> None:
    values = [2.0, 1.5, math.nan, 1.0, math.inf, -math.inf, 0.5]
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    assert loss.points["step"].to_list() == [1, 2, 4, 7]
    assert loss.markers.select("step", data.LABEL).rows() == [(3, "NaN"), (5, "+Inf"), (6, "-Inf")]
    assert (loss.drawn, loss.total) == (7, 7)


def test_learning_rate_is_its_own_series_and_not_a_metric(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0, 0.9])
    run.scalars("lr", "train", [0.1, 0.05]).scalars("lr.group1", "train", [0.01, 0.01])
    run.finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loaded = data.load(store, diagnosis).per_run[0]
    assert list(loaded.metrics) == ["loss"]
    assert loaded.lr is not None
    assert sorted(set(loaded.lr.points["name"].to_list())) == ["lr", "lr.group1"]


def test_metrics_come_loss_first_then_accuracy_then_alphabetically(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    for name in ("zeta", "acc", "f1", "loss"):
        run.scalars(name, "train", [1.0])
    run.finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    assert list(data.load(store, diagnosis).per_run[0].metrics) == ["loss", "acc", "f1", "zeta"]


def test_parameters_are_ordered_by_depth_within_the_first_step(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    # Written in this order within each step: seq gives the depth, not the name.
    for param in ("net.2.bias", "net.0.weight", "net.10.weight"):
        run.tensors(param, "grad", [1.0, 1.0], steps=[1, 2])
    run.tensors("late.weight", "grad", [1.0], steps=[2])
    run.finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    order = data.load(store, diagnosis).per_run[0].param_order
    assert order == ["net.2.bias", "net.0.weight", "net.10.weight", "late.weight"]


def test_global_norm_is_the_root_of_summed_squares_and_keeps_nan(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    run.tensors("a", "grad", [3.0, 1.0, 1.0])
    run.tensors("b", "grad", [4.0, math.nan, 0.0])
    run.finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loaded = data.load(store, diagnosis).per_run[0]
    assert loaded.global_norm is not None
    assert loaded.global_norm.points.select("step", "norm").rows() == [(1, 5.0), (3, 1.0)]
    assert loaded.global_norm.markers.select("step", data.LABEL).rows() == [(2, "NaN")]


def test_zero_gradient_norms_are_marked_because_a_log_axis_cannot_show_them(
    tmp_path: Path,
) -> None:
    RunBuilder(tmp_path, "r").tensors("a", "grad", [1e-3, 0.0, 1e-3]).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    layers = data.load(store, diagnosis).per_run[0].layer_norms
    assert layers is not None
    assert layers.markers.select("param", "step", data.LABEL).rows() == [
        ("a", 2, "0 (off the log scale)")
    ]


def test_long_series_are_decimated_and_counted(tmp_path: Path) -> None:
    values = [math.sin(i / 10) for i in range(3_000)]
    values[1_234] = math.nan
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    assert loss.total == 3_000
    assert loss.drawn <= data.MAX_POINTS + 1
    assert loss.note is not None and loss.note.startswith(f"{loss.drawn:,} of 3,000 points drawn")
    assert loss.markers["step"].to_list() == [1_235]
    assert {1, 3_000} <= set(loss.points["step"].to_list())


def test_a_chart_of_many_series_shares_one_point_budget() -> None:
    df = pl.DataFrame(
        {
            "param": [f"p{i % 400}" for i in range(400 * 300)],
            "step": [i // 400 for i in range(400 * 300)],
            "norm": [1.0] * (400 * 300),
        }
    )
    s = data.series(df, value="norm", by=["param"], positive=True)
    assert s.total == 120_000
    assert s.drawn <= 400 * data.MIN_PER_SERIES


def test_only_the_runs_of_the_diagnosis_are_loaded_with_their_own_findings(
    tmp_path: Path,
) -> None:
    trained(tmp_path, "a")
    trained(tmp_path, "b")
    store = open_store(tmp_path)
    runs = store.sql("SELECT * FROM runs WHERE run_id = 'b'")
    finding = Finding("x", Severity.WARNING, "b", None, None, "m", "s")
    other = Finding("x", Severity.WARNING, "a", None, None, "m", "s")
    skipped = NotEvaluated("y", "b", "needs more")
    loaded = data.load(store, Diagnosis(runs, [finding, other], [skipped]))
    assert [r.run_id for r in loaded.per_run] == ["b"]
    assert loaded.findings == {"b": [finding]}
    assert loaded.not_evaluated == {"b": [skipped]}


def test_a_diagnosis_without_runs_loads_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    loaded = data.load(store, Diagnosis(runs=pl.DataFrame()))
    assert loaded.per_run == [] and loaded.findings == {}
