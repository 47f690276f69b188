"""reports.data: what the report reads from a store, shaped for the charts."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from analysis import Diagnosis, Finding, NotEvaluated, Severity, open_store
from reports import activations, data, internals, series
from tests.builders import RunBuilder
from tests.reports import pages
from tests.reports.pages import open_diagnosed, trained


def test_nan_and_inf_loss_points_become_labelled_markers(tmp_path: Path) -> None:
    values = [2.0, 1.5, math.nan, 1.0, math.inf, -math.inf, 0.5]
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    assert loss.points["step"].to_list() == [1, 2, 4, 7]
    labels = loss.markers.select("step", series.LABEL).rows()
    assert labels == [(3, "NaN"), (5, "+Inf"), (6, "-Inf")]
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
    assert loaded.global_norm.markers.select("step", series.LABEL).rows() == [(2, "NaN")]


def test_zero_gradient_norms_are_marked_because_a_log_axis_cannot_show_them(
    tmp_path: Path,
) -> None:
    RunBuilder(tmp_path, "r").tensors("a", "grad", [1e-3, 0.0, 1e-3]).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    layers = data.load(store, diagnosis).per_run[0].layer_norms
    assert layers is not None
    assert layers.markers.select("param", "step", series.LABEL).rows() == [
        ("a", 2, "0 (off the log scale)")
    ]


def test_long_series_are_decimated_and_counted(tmp_path: Path) -> None:
    values = [math.sin(i / 10) for i in range(3_000)]
    values[1_234] = math.nan
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    assert loss.total == 3_000
    assert loss.drawn <= series.MAX_POINTS + 1
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
    s = series.series(df, value="norm", by=["param"], positive=True, max_lines=400)
    assert s.total == 120_000
    assert s.drawn <= 400 * series.MIN_PER_SERIES


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


def test_activations_follow_forward_order_and_a_shared_module_counts_its_first_call(
    tmp_path: Path,
) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    # "b" runs before "a"; "a" is called twice per forward (shared weights).
    values = iter([0.1, 0.2, 0.9, 0.3, 0.4, 0.8])
    forward = [("b", "Linear"), ("a", "ReLU"), ("a", "ReLU")]
    pages.activations(
        tmp_path, "r", forward, [1, 2], zero_frac=lambda m, s: next(values), dead_frac=0.5
    )
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    acts = data.load(store, diagnosis).per_run[0].activations
    assert acts is not None
    assert acts.order == ["b", "a"]
    cells = acts.zero_frac.cells.sort("module", "step")
    assert cells.select("module", "step", "zero_frac").rows() == [
        ("a", 1, 0.2),
        ("a", 2, 0.4),
        ("b", 1, 0.1),
        ("b", 2, 0.3),
    ]
    assert acts.dead is not None and acts.dead.drawn == ["b", "a"]
    assert acts.saturated is None


def test_a_dead_chart_of_many_relus_draws_those_with_the_highest_peak(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    relus = [(f"relu{i}", "ReLU") for i in range(activations.MAX_FRACTION_LINES + 5)]
    peak = {"relu3": 0.9, "relu24": 0.8}
    pages.activations(
        tmp_path, "r", relus, [1, 2], dead_frac=lambda m, s: peak.get(m, 0.01 * int(m[4:]))
    )
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    acts = data.load(store, diagnosis).per_run[0].activations
    assert acts is not None and acts.dead is not None
    drawn = acts.dead.drawn
    assert len(drawn) == activations.MAX_FRACTION_LINES and {"relu3", "relu24"} <= set(drawn)
    assert drawn == sorted(drawn, key=lambda m: int(m[4:])), "in forward order"
    assert {"relu0", "relu1", "relu2"}.isdisjoint(drawn), "the lowest peaks are left out"
    assert (
        acts.dead.note
        == f"the {activations.MAX_FRACTION_LINES} of 25 modules with the highest peak are drawn."
    )


def test_samples_keep_their_first_and_latest_step_and_list_every_step(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    maps = [[[1, 2], [3, 4]]]
    rows = {s: [pages.sample("c", "feature_map", maps, [0.0], [1.0])] for s in (1, 11, 21, 31)}
    rows[11] = [{**rows[11][0], "shape": [1, 3, 3]}]  # broken, but not drawn anyway
    rows[31] = [{**rows[31][0], "dtype": "float32"}]
    pages.samples(tmp_path, "r", rows)
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    (sampled,) = data.load(store, diagnosis).per_run[0].samples
    assert sampled.steps == [1, 11, 21, 31]
    assert [i.step for i in sampled.images] == [1]
    assert sampled.problems == ["step 31: dtype 'float32' (only uint8 samples can be drawn)"]


def test_a_nan_origin_with_the_output_sum_is_described(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    payload = {"module": "fc", "module_type": "Linear", "numel": 640, "sum": "Infinity"}
    pages.event(tmp_path, "r", "nonfinite_origin", payload, step=7)
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    box = internals.origin_box(data.load(store, diagnosis).per_run[0], 1)
    assert box is not None and box.detail == "640 elements, holds +Inf"


def test_a_nan_origin_with_min_and_max_instead_of_a_count_is_described(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    payload = {"module": "f.2", "module_type": "Conv2d", "numel": 131072, "min": "-Infinity"}
    pages.event(tmp_path, "r", "nonfinite_origin", {**payload, "max": 3.5e38}, step=32)
    pages.event(tmp_path, "r", "nonfinite_origin", payload, step=40)
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    run = data.load(store, diagnosis).per_run[0]
    box = internals.origin_box(run, 1)
    assert box is not None
    assert (box.module, box.module_type, box.step, box.later) == ("f.2", "Conv2d", 32, "40")
    assert box.detail == "131,072 elements, min -Infinity, max 3.5e+38"


def test_several_rows_of_a_metric_at_one_step_draw_one_point_at_their_mean(
    tmp_path: Path,
) -> None:
    # Gradient accumulation: a log() per micro-batch, four rows per optimizer step.
    micro = [[4.0, 2.0, 3.0, 1.0], [2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.5, 0.5]]
    values = [v for step in micro for v in step]
    steps = [s for s in (1, 2, 3) for _ in range(4)]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", values, steps=steps)
    run.scalars("loss", "val", [1.5, 0.5], steps=[2, 3]).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    train = loss.points.filter(pl.col("split") == "train")
    assert train.select("step", "value").rows() == [(1, 2.5), (2, 1.0), (3, 0.75)]
    val = loss.points.filter(pl.col("split") == "val")
    assert val.select("step", "value").rows() == [(2, 1.5), (3, 0.5)]
    assert (loss.drawn, loss.total) == (5, 5)


def test_a_nan_among_a_steps_rows_marks_that_step(tmp_path: Path) -> None:
    values = [1.0, 3.0, 1.0, math.nan, 0.5, 0.5]
    steps = [1, 1, 2, 2, 3, 3]
    RunBuilder(tmp_path, "r").scalars("loss", "train", values, steps=steps).finish().write()
    store, diagnosis = open_diagnosed(tmp_path)
    loss = data.load(store, diagnosis).per_run[0].metrics["loss"]
    assert loss.points.select("step", "value").rows() == [(1, 2.0), (3, 0.5)]
    assert loss.markers.select("step", series.LABEL).rows() == [(2, "NaN")]
