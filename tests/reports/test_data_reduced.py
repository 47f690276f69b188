"""reports.data reduces in the database, and draws what reducing every row in Python draws.

The report once read every gradient, weight, scalar and system row of a run and reduced
them in Polars (``reports.tensors``, ``reports.system``, ``reports.step_norms``,
``reports.series``); those functions are the reference here. A run of 30,000 steps x 8
parameters, with what a reader looks for (a parameter that diverges, a zero norm, an
Inf, clipped steps, untimed steps), must draw exactly what they draw from every row,
while what crosses into Python stays within the page's budget; so must the small runs
where the choice of lines has to look past the budget's first picks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analysis import Diagnosis, Store
from reports import data, step_norms, system, tensors
from reports.budget import Budget
from reports.heatmap import Heatmap
from reports.series import Series, series
from store.records import Rows
from store.schema import Stream
from tests.builders import RunBuilder
from tests.reports import pages

STEPS = 30_000
PARAMS = [f"layer{i}.weight" for i in range(8)]
DIVERGED = "layer3.weight"
"""Its gradient is NaN from step 25,001 on: 5,000 non-finite rows, more than any chart marks."""

# What the report read before it reduced in the database: every row of the run.
_ALL_GRADIENTS = """
SELECT param, step, seq, norm, mean, std, min, max
FROM tensors WHERE run_id = $run_id AND kind = 'grad'
QUALIFY rank = min(rank) OVER () ORDER BY step, seq
"""
_ALL_WEIGHTS = """
WITH t AS (
    SELECT param, kind, step, seq, norm FROM tensors
    WHERE run_id = $run_id AND kind IN ('weight', 'update') QUALIFY rank = min(rank) OVER ()
)
SELECT param, step, min(seq) AS seq,
       max(norm) FILTER (WHERE kind = 'weight') AS weight,
       max(norm) FILTER (WHERE kind = 'update') AS "update"
FROM t GROUP BY param, step ORDER BY step, seq
"""
_ALL_SYSTEM = """
SELECT step, step_time_s, data_time_s, compute_time_s, samples_per_s,
       grad_norm, grad_norm_step, clip_ratio
FROM system WHERE run_id = $run_id QUALIFY rank = min(rank) OVER () ORDER BY step, seq
"""
_ALL_SCALARS = """
SELECT name, split, step, avg(value) AS value
FROM scalars WHERE run_id = $run_id
GROUP BY name, split, step ORDER BY name, split NULLS LAST, step
"""

TIGHT = Budget(
    metric_charts=2,
    curve_points=400,
    series=100,
    lines=3,
    line_points=300,
    cells=150,
    markers=20,
)
"""A crowded page's share: three of the eight parameters get lines, so the choice matters."""


def _grad(rng: random.Random, p: int, step: int) -> float:
    if PARAMS[p] == DIVERGED and step > 25_000:
        return math.nan
    if p == 5 and step % 4_999 == 0:
        return 0.0
    if p == 1 and step == 777:
        return math.inf
    return (p + 1) * math.exp(-step / STEPS) * rng.lognormvariate(0, 0.3)


def _tensors(rng: random.Random, step: int) -> Rows:
    cols: dict[str, list[Any]] = {name: [] for name in ("param", "kind", "norm", "mean", "std")}
    for p, param in enumerate(PARAMS):
        grad = _grad(rng, p, step)
        weight = 0.0 if (p == 2 and step == 100) else 10.0 + p + step / STEPS
        update = math.nan if (p == 4 and step == 12_345) else weight * rng.uniform(1e-4, 1e-2)
        for kind, norm in (("grad", grad), ("weight", weight), ("update", update)):
            cols["param"].append(param)
            cols["kind"].append(kind)
            cols["norm"].append(norm)
            cols["mean"].append(math.nan if (p == 0 and step == 15_000) else 1e-3 * grad)
            cols["std"].append(grad / 10)
    cols |= {
        "min": [-n for n in cols["norm"]],
        "max": cols["norm"],
        "numel": [100] * len(PARAMS) * 3,
    }
    return Rows(Stream.TENSORS, step=step, epoch=None, wall_time=1.7e9 + step, columns=cols)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long")
    rng = random.Random(0)
    steps = range(1, STEPS + 1)
    run = RunBuilder(root, "long")
    loss = [2 * math.exp(-s / 9_000) + rng.gauss(0, 0.02) for s in steps]
    loss[4_321], loss[20_000] = math.nan, math.inf
    run.scalars("loss", "train", loss)
    val_steps = list(range(100, STEPS + 1, 100))
    run.scalars("loss", "val", [loss[s - 1] * 1.1 for s in val_steps], steps=val_steps)
    run.scalars("acc", "val", [1 - loss[s - 1] / 3 for s in val_steps], steps=val_steps)
    run.scalars("lr", "train", [0.1 * 0.5 ** (s // 10_000) for s in steps])
    pre = [abs(rng.gauss(1.0, 0.5)) for _ in steps]
    pre[17_000] = math.nan
    at = [min(n, 1.2) for n in pre]
    times: list[float | None] = [0.1 + rng.random() / 100 for _ in steps]
    times[::97] = [None] * len(times[::97])
    run.system(
        times,
        [0.02] * STEPS,
        grad_norm=pre,
        grad_norm_step=at,
        clip_ratio=[a / p if a < p else None for p, a in zip(pre, at, strict=True)],
        samples_per_s=[640.0 + rng.gauss(0, 5) for _ in steps],
    )
    run.finish().write()
    pages.write_stream(root, "long", Stream.TENSORS, [_tensors(rng, s) for s in steps])
    return root


@pytest.fixture
def counted(long_run: Path) -> Iterator[tuple[Store, Diagnosis, list[int]]]:
    """The store, its runs, and the rows each of its queries returned from here on."""
    store, diagnosis = pages.open_undiagnosed(long_run)
    fetched: list[int] = []
    sql = store.sql

    def counting(query: str, params: Any = None) -> pl.DataFrame:
        out = sql(query, params)
        fetched.append(out.height)
        return out

    store.sql = counting  # type: ignore[method-assign]
    yield store, diagnosis, fetched
    store.sql = sql  # type: ignore[method-assign]


@pytest.mark.parametrize("budget", [Budget(), TIGHT], ids=["one run", "a crowded page"])
def test_a_long_run_draws_what_reducing_every_row_in_python_draws(
    counted: tuple[Store, Diagnosis, list[int]], budget: Budget
) -> None:
    store, diagnosis, _ = counted
    got = data.load(store, diagnosis, budget=budget).per_run[0]
    run = {"run_id": "long"}

    grads = tensors.gradients(store.sql(_ALL_GRADIENTS, run), budget, [])
    assert got.param_order == grads.order == PARAMS
    _same_series(got.layer_norms, grads.lines)
    _same_series(got.global_norm, grads.global_norm)
    _same_heatmap(got.grad_heatmap, grads.heatmap)
    assert got.grad_bands is not None and grads.bands is not None
    assert_frame_equal(got.grad_bands.points, grads.bands.points, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(got.grad_bands.markers, grads.bands.markers)
    assert got.grad_bands.note == grads.bands.note

    weights = tensors.weights(
        store.sql(_ALL_WEIGHTS, run), band=data.DEFAULT_BAND, budget=budget, first=grads.drawn
    )
    assert got.weights is not None and weights is not None
    _same_series(got.weights.norms, weights.norms)
    _same_series(got.weights.ratio, weights.ratio)

    steps = store.sql(_ALL_SYSTEM, run)
    timing, norms = (
        system.summarize(steps, budget=budget),
        step_norms.summarize(steps, budget=budget),
    )
    assert got.system is not None and timing is not None
    _same_series(got.system.time, timing.time)
    _same_series(got.system.throughput, timing.throughput)
    assert got.step_norms is not None and norms is not None
    _same_series(got.step_norms.series, norms.series)
    assert (got.step_norms.clipped, got.step_norms.steps) == (norms.clipped, norms.steps)

    scalars = store.sql(_ALL_SCALARS, run)
    per_chart = budget.curve_points // len(got.metrics)
    for metric, curve in got.metrics.items():
        rows = scalars.filter(pl.col("name") == metric).select("split", "step", "value")
        expected = series(
            rows,
            value="value",
            by=["split"],
            max_points=min(budget.series, per_chart),
            budget=per_chart,
            max_lines=budget.lines,
            line_kind="splits",
            max_markers=budget.markers,
        )
        _same_series(curve, expected)
    lr = scalars.filter(pl.col("name") == "lr").select("name", "step", "value")
    expected_lr = series(
        lr,
        value="value",
        by=["name"],
        max_points=budget.series,
        budget=budget.series,
        max_lines=budget.lines,
        line_kind="parameter groups",
        max_markers=budget.markers,
    )
    _same_series(got.lr, expected_lr)


def test_a_diverged_parameter_is_marked_where_it_diverged_and_counted_to_the_end(
    counted: tuple[Store, Diagnosis, list[int]],
) -> None:
    store, diagnosis, _ = counted
    lines = data.load(store, diagnosis).per_run[0].layer_norms
    assert lines is not None
    nan = lines.markers.filter(pl.col("label") == "NaN")
    assert nan["param"].unique().to_list() == [DIVERGED]
    assert nan["step"].min() == 25_001
    assert lines.marked == 5_000 + 1 + 6, "every NaN, the Inf and the zeros are counted"


@pytest.mark.parametrize("budget", [Budget(), TIGHT], ids=["one run", "a crowded page"])
def test_what_a_long_run_sends_to_python_is_bounded_by_the_budget_not_the_run(
    counted: tuple[Store, Diagnosis, list[int]], budget: Budget
) -> None:
    store, diagnosis, fetched = counted
    data.load(store, diagnosis, budget=budget)
    lines = len(PARAMS)
    # Each chart draws its budget's points; each of its lines keeps up to `markers` rows
    # that cannot be drawn besides (counted beyond that). The lines: train and val loss,
    # val acc, lr, a parameter's gradient norm, the global norm, weight norms and update
    # ratios per parameter, data wait and compute, throughput, the two step norms.
    points = (
        budget.curve_points
        + budget.series  # the learning rate
        + budget.line_points
        + budget.series  # the global norm
        + budget.cells
        + tensors.MAX_BAND_PARAMS * budget.band_buckets
        + 2 * budget.line_points
        + 5 * budget.series
    )
    series_drawn = 4 + 1 + 3 * min(lines, budget.lines) + 5
    bound = points + budget.markers * series_drawn
    rows = STEPS * (len(PARAMS) * 3 + 4 + 1)
    assert sum(fetched) <= bound < rows / 10


def _same_series(got: Series | None, expected: Series | None) -> None:
    assert got is not None and expected is not None
    # The global norm's sum of squares may differ in its last bit (the database's exact
    # fsum, Polars' pairwise sum); every other value is computed the same way.
    assert_frame_equal(got.points, expected.points, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(got.markers, expected.markers)
    assert (got.drawn, got.total, got.marked) == (expected.drawn, expected.total, expected.marked)
    assert (got.lines, got.lines_total, got.line_kind) == (
        expected.lines,
        expected.lines_total,
        expected.line_kind,
    )
    assert got.note == expected.note


def _same_heatmap(got: Heatmap | None, expected: Heatmap) -> None:
    assert got is not None
    assert_frame_equal(got.cells, expected.cells)
    assert_frame_equal(got.markers, expected.markers)
    assert (got.order, got.modules, got.steps, got.columns) == (
        expected.order,
        expected.modules,
        expected.steps,
        expected.columns,
    )
    assert got.note == expected.note


def test_weights_of_parameters_without_gradients_fill_the_lines_in_order_of_appearance(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    steps = list(range(1, 301))
    # Only "c" has gradients: it gets the first line; "e", "a", "d" follow as they
    # appear (registration order within a step, not the alphabet), "b" is left out.
    for param in ("e", "a", "c", "d", "b"):
        weight = [1.0 + s / 100 for s in steps]
        run.tensors(param, "weight", weight, steps=steps)
        if param != "b":
            update = [math.nan if s == 7 else w / 1_000 for s, w in zip(steps, weight, strict=True)]
            run.tensors(param, "update", update, steps=steps)
    run.tensors("c", "grad", [0.5] * len(steps), steps=steps)
    run.finish().write()
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    budget = Budget(lines=4, series=100, line_points=200, markers=20)
    got = data.load(store, diagnosis, budget=budget).per_run[0].weights
    rows = store.sql(_ALL_WEIGHTS, {"run_id": "r"})
    expected = tensors.weights(rows, band=data.DEFAULT_BAND, budget=budget, first=["c"])
    assert got is not None and expected is not None and got.norms is not None
    _same_series(got.norms, expected.norms)
    _same_series(got.ratio, expected.ratio)
    assert got.norms.points["param"].unique().sort().to_list() == ["a", "c", "d", "e"]


def test_a_metric_with_more_splits_than_lines_draws_the_first_splits_by_name(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    for i, split in enumerate(("val", "train", "test", "holdout", None)):
        run.scalars("loss", split, [float(i) + s % 7 for s in range(500)])
    run.scalars("lr", "train", [0.1] * 500).scalars("lr.group1", "train", [0.2] * 500)
    run.finish().write()
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    budget = Budget(lines=3, series=100, curve_points=200, markers=20)
    got = data.load(store, diagnosis, budget=budget).per_run[0]
    scalars = store.sql(_ALL_SCALARS, {"run_id": "r"})
    loss = scalars.filter(pl.col("name") == "loss").select("split", "step", "value")
    expected = series(
        loss,
        value="value",
        by=["split"],
        max_points=100,
        budget=200,
        max_lines=3,
        line_kind="splits",
        max_markers=20,
    )
    _same_series(got.metrics["loss"], expected)
    assert got.metrics["loss"].note is not None
    assert got.metrics["loss"].note.startswith("Lines for 3 of 5 splits.")
    assert got.lr is not None and got.lr.lines == 2


def test_a_run_recorded_by_several_ranks_draws_the_lowest(tmp_path: Path) -> None:
    for rank, scale in ((1, 10.0), (0, 1.0)):
        run = RunBuilder(tmp_path, "r", rank=rank).scalars("loss", "train", [scale] * 5)
        run.tensors("w", "grad", [scale] * 5).tensors("w", "weight", [scale] * 5)
        run.tensors("w", "update", [scale / 100] * 5)
        run.system([scale / 10] * 5, [scale / 100] * 5, grad_norm=[scale] * 5)
        run.finish().write()
    store, diagnosis = pages.open_undiagnosed(tmp_path)
    got = data.load(store, diagnosis).per_run[0]
    assert got.weights is not None and got.system is not None and got.step_norms is not None
    drawn = {
        "loss": got.metrics["loss"].points["value"],
        "grad": got.layer_norms.points["norm"] if got.layer_norms else None,
        "global": got.global_norm.points["norm"] if got.global_norm else None,
        "heatmap": got.grad_heatmap.cells["norm"] if got.grad_heatmap else None,
        "bands": got.grad_bands.points["hi"] if got.grad_bands else None,
        "weight": got.weights.norms.points["weight"] if got.weights.norms else None,
        "ratio": got.weights.ratio.points["ratio"] if got.weights.ratio else None,
        "time": got.system.time.points["seconds"] if got.system.time else None,
        "norm": got.step_norms.series.points["norm"],
    }
    lowest = {"time": [0.01, 0.09], "ratio": [0.01]}
    assert {k: sorted(set(v.to_list())) if v is not None else None for k, v in drawn.items()} == {
        k: lowest.get(k, [1.0]) for k in drawn
    }
