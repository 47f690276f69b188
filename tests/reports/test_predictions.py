"""The predictions section: confusion matrices at each split's latest step (normalised per
true class, capped, the rest counted), per-class recall over steps, regression errors; linked
from class_imbalance and prediction_collapse by split; absent where nothing was logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import Diagnosis, Finding, Severity, open_store
from reports import predictions, render_report
from reports.budget import Budget
from reports.predictions import OTHER
from tests.builders import RunBuilder
from tests.reports.pages import HOSTILE, Parts, axis_labels, datasets, open_undiagnosed, trained


def _read(root: Path, budget: Budget | None = None) -> predictions.Predictions:
    got = predictions.read(open_store(root), "r", budget or Budget())
    assert got is not None
    return got


def test_a_matrix_is_the_latest_step_with_each_row_a_share_of_its_true_class(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    run.confusion("val", 10, {(0, 0): 1, (1, 0): 9})
    run.confusion("val", 20, {(0, 0): 6, (0, 1): 2, (1, 1): 3, (1, 0): 1})
    run.finish().write()
    [m] = _read(tmp_path).matrices
    assert (m.split, m.step, m.examples, m.hits, m.classes) == ("val", 20, 12, 9, ["0", "1"])
    assert m.accuracy == 0.75
    cells = m.cells.sort("true", "predicted").select("true", "predicted", "count", "share")
    assert cells.rows() == [
        ("0", "0", 6, 0.75),
        ("0", "1", 2, 0.25),
        ("1", "0", 1, 0.25),
        ("1", "1", 3, 0.75),
    ]
    assert m.per_class.rows() == [("0", 8, 0.75), ("1", 4, 0.75)]
    assert m.note is None


def test_the_most_frequent_classes_are_drawn_and_other_predictions_are_one_column(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    # Class c has 100 + c examples, 90 % right; the rest are predicted as class 39.
    cells = {}
    for c in range(40):
        n = 100 + c
        cells[(c, c)] = n - 10
        cells[(c, 39 if c != 39 else 0)] = 10
    run.confusion("val", 5, cells).finish().write()
    [m] = _read(tmp_path).matrices
    assert len(m.classes) == predictions.MAX_CLASSES
    assert m.classes == [str(c) for c in range(10, 40)], "the most frequent, by class id"
    assert m.total_classes == 40
    assert m.left_out_examples == sum(100 + c for c in range(10))
    # Rows still add up to their class: class 0 predicted as class 0 is left out with
    # its row; class 39 predicted as 0 (not drawn) is in the other column.
    row = m.cells.filter(m.cells["true"] == "39").sort("predicted")
    assert row.select("predicted", "count").rows() == [("39", 129), (OTHER, 10)]
    assert sum(row["share"].to_list()) == pytest.approx(1.0, abs=1e-3)
    assert m.note == (
        "The 30 most frequent of 40 true classes are drawn (1,045 of 4,780 examples belong to "
        "the 10 left out); predictions of classes not drawn are the “other” column."
    )


def test_a_crowded_page_draws_fewer_classes_within_its_share_of_heatmap_cells(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    run.confusion("val", 5, {(c, c): 10 + c for c in range(20)}).finish().write()
    [m] = _read(tmp_path, budget=Budget(cells=100)).matrices
    assert len(m.classes) == 10, "10 x 11 cells fit a budget of about 100"


def test_val_comes_first_and_splits_beyond_three_are_named(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    for split in ("zeta", "train", "alpha", "val", "test"):
        run.confusion(split, 3, {(0, 0): 1})
    run.finish().write()
    got = _read(tmp_path)
    assert [m.split for m in got.matrices] == ["val", "test", "train"]
    assert got.left_out == ["alpha", "zeta"]
    assert got.note == "Confusion matrices not drawn for splits: alpha, zeta."


def test_recall_lines_are_the_classes_doing_worst_on_the_first_split_logged_often(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    run.confusion("val", 30, {(c, c): 1 for c in range(12)})  # once: no line over steps
    for step in (10, 20, 30):
        cells = {(c, c): 9 for c in range(12)}
        cells[(0, 0)], cells[(0, 1)] = 3, 6  # class 0 a third right
        cells[(5, 5)], cells[(5, 2)] = step // 10, 9 - step // 10  # class 5 improving
        run.confusion("train", step, cells)
    run.finish().write()
    got = _read(tmp_path)
    assert got.recall is not None and got.recall.split == "train"
    points = got.recall.series.points
    assert points["class"].n_unique() == predictions.MAX_RECALL_LINES
    assert points.filter(points["class"] == 5).sort("step")["recall"].to_list() == pytest.approx(
        [1 / 9, 2 / 9, 3 / 9], abs=1e-5
    )
    third = points.filter(points["class"] == 0)["recall"].to_list()
    assert third == pytest.approx([1 / 3] * 3, abs=1e-5)
    # The two classes with perfect recall and the highest ids are the ones left out.
    assert sorted(set(points["class"].to_list())) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert got.recall.series.note == (
        "Lines for 10 of 12 classes of the matrix (those with the lowest recall at its step)"
    )


def test_a_split_logged_once_has_a_matrix_and_no_recall_lines(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").confusion("val", 3, {(0, 0): 4, (1, 0): 4}).finish().write()
    got = _read(tmp_path)
    assert len(got.matrices) == 1 and got.recall is None and got.residuals is None


def test_regression_draws_rmse_bias_and_r2_over_steps_per_split(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    run.residuals("val", 10, [0.0, 2.0], [1.0, 3.0])  # bias 1, rmse 1, r2 = 1 - 1/1 = 0
    run.residuals("val", 20, [0.0, 2.0], [0.0, 2.0])  # perfect
    run.residuals("train", 20, [1.0, 1.0], [1.5, 0.5])  # constant targets: r2 undefined
    run.finish().write()
    got = _read(tmp_path)
    assert got.matrices == [] and got.residuals is not None
    r = got.residuals
    assert r.lines == ["val", "train"]
    rows = r.series.points.sort("quantity", "line", "step").rows()
    assert rows == [
        ("bias", "train", 20, 0.0),
        ("bias", "val", 10, 1.0),
        ("bias", "val", 20, 0.0),
        ("r2", "val", 10, 0.0),
        ("r2", "val", 20, 1.0),
        ("rmse", "train", 20, 0.5),
        ("rmse", "val", 10, 1.0),
        ("rmse", "val", 20, 0.0),
    ]
    assert r.series.markers.height == 0, "an undefined r2 is left out, not marked red"


def test_nothing_logged_reads_as_none(tmp_path: Path) -> None:
    trained(tmp_path)
    assert predictions.read(open_store(tmp_path), "r1", Budget()) is None


def _finding(rule: str, run_id: str, split: str) -> Finding:
    return Finding(rule, Severity.WARNING, run_id, split, 20, f"{rule} on {split}", "fix it")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Parts]:
    """A classifier with a hostile split name, a regression, and a run without predictions;
    class_imbalance and prediction_collapse findings name the splits."""
    root = tmp_path_factory.mktemp("store")
    cls = RunBuilder(root, "cls", name="classifier")
    cls.scalars("loss", "train", [1.0, 0.5])
    for step in (10, 20):
        cls.confusion("val", step, {(0, 0): 40, (0, 1): 2, (1, 1): 1, (1, 0): 3})
        cls.confusion(HOSTILE, step, {(0, 0): 10, (1, 0): 10})
    cls.finish().write()
    reg = RunBuilder(root, "reg", name="regressor")
    reg.scalars("loss", "train", [1.0, 0.5])
    for step in (10, 20):
        reg.residuals("val", step, [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    reg.finish().write()
    trained(root, "plain", name="plain")
    store, plain = open_undiagnosed(root)
    found = [
        _finding("class_imbalance", "cls", "val"),
        _finding("prediction_collapse", "cls", HOSTILE),
        _finding("prediction_collapse", "reg", "val"),
    ]
    html = render_report(store, Diagnosis(plain.runs, found))
    return html, Parts(html)


def _chart_ids(parts: Parts, title: str) -> list[str]:
    """The ids of the charts whose title starts with ``title``."""
    out = []
    for attrs, body in parts.scripts:
        if attrs.get("data-chart"):
            t = json.loads(body).get("title")
            if str(t.get("text") if isinstance(t, dict) else t).startswith(title):
                out.append(str(attrs["data-chart"]))
    return out


def test_the_section_draws_each_runs_predictions_and_names_the_run_without(
    page: tuple[str, Parts],
) -> None:
    _, parts = page
    assert parts.sections.index("curves") < parts.sections.index("predictions")
    titles = [str(s.get("title")) for s in parts.chart_specs()]
    assert sum("confusion matrix" in t for t in titles) == 2
    assert sum("recall per class" in t for t in titles) == 1
    assert sum("regression errors" in t for t in titles) == 1
    assert "No predictions recorded for: plain." in parts.plain_text


def test_class_imbalance_links_to_its_splits_matrix_and_the_recall_lines(
    page: tuple[str, Parts],
) -> None:
    html, parts = page
    [val] = _chart_ids(parts, "confusion matrix: val")
    [hostile] = _chart_ids(parts, f"confusion matrix: {HOSTILE}")
    [recall] = _chart_ids(parts, "recall per class")
    [errors] = _chart_ids(parts, "regression errors")
    links = [str(a["href"]) for t, a in parts.tags if t == "a" and a.get("class") == "evidence"]
    # class_imbalance on val; prediction_collapse on the hostile split; on the regression.
    assert links == [f"#{val}", f"#{recall}", f"#{hostile}", f"#{recall}", f"#{errors}"]


def test_a_split_name_from_the_run_is_text_never_markup(page: tuple[str, Parts]) -> None:
    html, parts = page
    assert HOSTILE not in html
    assert f"confusion matrix: {HOSTILE}" in [
        (s["title"]["text"] if isinstance(s["title"], dict) else s["title"])
        for s in parts.chart_specs()
    ]
    matrix = next(s for s in parts.chart_specs() if "confusion matrix: val" in str(s.get("title")))
    cells = [r for r in datasets(matrix) if "share" in r]
    assert {(r["true"], r["predicted"], r["count"]) for r in cells} == {
        ("0", "0", 40),
        ("0", "1", 2),
        ("1", "0", 3),
        ("1", "1", 1),
    }


def test_a_store_without_predictions_has_no_predictions_section(tmp_path: Path) -> None:
    trained(tmp_path)
    store, diagnosis = open_undiagnosed(tmp_path)
    assert "predictions" not in Parts(render_report(store, diagnosis)).sections


def test_every_prediction_chart_draws_with_the_pages_vega_lite(page: tuple[str, Parts]) -> None:
    _, parts = page
    drawn = [
        s
        for s in parts.chart_specs()
        if any(t in str(s.get("title")) for t in ("confusion", "recall", "regression"))
    ]
    assert len(drawn) == 4
    for spec in drawn:
        assert axis_labels(spec), "vl-convert compiled and drew it"
    [matrix] = [s for s in drawn if "confusion matrix: val" in str(s.get("title"))]
    assert axis_labels(matrix)[:2] == [["0", "1"], ["0", "1"]], "rows and columns by class id"
