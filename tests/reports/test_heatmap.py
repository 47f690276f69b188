"""heatmap: module x step grids stay bounded and keep what a reader looks for."""

from __future__ import annotations

import math

import polars as pl

from reports.heatmap import CELL_BUDGET, MAX_ROWS, Heatmap, grid
from reports.series import split_drawable


def _frame(
    modules: list[str], steps: list[int], value: dict[tuple[str, int], float]
) -> pl.DataFrame:
    rows = [(m, "ReLU", s, value.get((m, s), 1.0)) for s in steps for m in modules]
    return pl.DataFrame(rows, schema=["module", "module_type", "step", "v"], orient="row")


def _grid(df: pl.DataFrame, order: list[str], *, log: bool = False) -> Heatmap:
    points, markers = split_drawable(df, value="v", positive=log)
    return grid(points, markers, value="v", order=order, log=log)


def test_few_steps_are_drawn_one_column_each_without_bucket_fields() -> None:
    heat = _grid(_frame(["a", "b"], [1, 11, 21], {}), ["a", "b"])
    assert heat.columns == heat.steps == 3
    assert heat.cells.columns == ["module", "module_type", "step", "v"]
    assert heat.note is None


def test_many_steps_and_modules_stay_within_the_cell_budget_and_say_so() -> None:
    modules = [f"layer{i}" for i in range(MAX_ROWS + 50)]
    steps = list(range(1, 3_001, 10))
    heat = _grid(_frame(modules, steps, {}), modules)
    cells = heat.cells
    assert cells.height <= CELL_BUDGET
    assert heat.order == modules[:MAX_ROWS]
    assert set(cells["module"].to_list()) == set(modules[:MAX_ROWS])
    note = heat.note or ""
    assert "300 sampled steps drawn as" in note
    assert f"the first {MAX_ROWS} of {MAX_ROWS + 50} modules" in note


def test_a_bucket_shows_its_most_unusual_value_and_its_range() -> None:
    steps = list(range(1, 1_001))
    spike = {("a", 495): 9.0, ("a", 496): 0.5}  # one bucket of ten steps: 491-500
    heat = _grid(_frame(["a"], steps, spike), ["a"])
    cells = heat.cells
    assert cells.height == heat.columns < len(steps)
    hot = cells.filter(pl.col("v") != 1.0)
    assert hot.select("step", "steps", "v", "lo", "hi", "n").rows() == [
        (491, "491–500", 9.0, 0.5, 9.0, 10)
    ]


def test_a_nan_or_zero_anywhere_in_a_bucket_marks_the_cell_on_a_log_scale() -> None:
    steps = list(range(1, 1_001))
    heat = _grid(
        _frame(["a", "b"], steps, {("a", 700): math.nan, ("b", 3): 0.0}), ["a", "b"], log=True
    )
    markers = heat.markers
    assert markers.select("module", "label").rows() == [
        ("a", "NaN"),
        ("b", "0 (off the log scale)"),
    ]
    marked = set(markers.select("module", "step").rows())
    assert not marked & set(heat.cells.select("module", "step").rows())
