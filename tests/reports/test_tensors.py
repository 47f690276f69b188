"""Per-parameter statistics for the page: weight norms, update ratios, grad heatmap and bands."""

from __future__ import annotations

import math

import polars as pl

from reports import tensors
from reports.heatmap import CELL_BUDGET


def _weights(rows: list[tuple[str, int, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"param": pl.String, "step": pl.Int64, "weight": pl.Float64, "update": pl.Float64},
        orient="row",
    ).with_columns(pl.int_range(pl.len()).alias("seq"))


def test_update_ratio_is_update_over_weight_and_keeps_the_band() -> None:
    rows = _weights([("w", 1, 2.0, 0.002), ("w", 2, 4.0, 0.004), ("b", 1, 1.0, None)])
    w = tensors.weights(rows, band=(1e-5, 0.1))
    assert w is not None and w.ratio is not None and w.norms is not None
    assert w.band == (1e-5, 0.1)
    assert w.ratio.points.sort("step").rows() == [("w", 1, 0.001), ("w", 2, 0.001)]
    assert sorted(w.norms.points["param"].to_list()) == ["b", "w", "w"]


def test_a_zero_weight_or_nan_update_becomes_a_marker_not_a_gap() -> None:
    rows = _weights([("w", 1, 0.0, 0.1), ("w", 2, 1.0, math.nan), ("w", 3, 1.0, 0.01)])
    w = tensors.weights(rows, band=(1e-5, 0.1))
    assert w is not None and w.ratio is not None and w.norms is not None
    assert dict(zip(w.ratio.markers["step"], w.ratio.markers["label"], strict=True)) == {
        1: "+Inf",
        2: "NaN",
    }
    assert w.norms.markers["label"].to_list() == ["0 (off the log scale)"]


def test_no_rows_means_no_weights_section() -> None:
    assert tensors.weights(_weights([]), band=(1e-5, 0.1)) is None


def test_many_parameters_share_one_point_budget() -> None:
    steps, params = 5_000, 60
    rows = _weights(
        [(f"p{p}", s, 1.0 + (s % 7), 1e-3) for p in range(params) for s in range(1, steps + 1)]
    )
    w = tensors.weights(rows, band=(1e-5, 0.1))
    assert w is not None and w.ratio is not None
    assert w.ratio.total == steps * params
    assert w.ratio.drawn <= tensors.PER_PARAMETER_BUDGET + 2 * params
    assert w.ratio.note is not None and "of 300,000 points drawn" in w.ratio.note


def _grads(params: list[str], steps: int, bad: tuple[str, int] | None = None) -> pl.DataFrame:
    rows = []
    for s in range(1, steps + 1):
        for i, p in enumerate(params):
            norm = (i + 1) * 0.1
            if bad == (p, s):
                norm = math.nan
            rows.append((p, s, s * 10 + i, norm, 0.0, norm / 10, -norm, norm))
    cols = ["param", "step", "seq", "norm", "mean", "std", "min", "max"]
    return pl.DataFrame(rows, schema=cols, orient="row")


def test_grad_heatmap_has_a_row_per_parameter_in_depth_order_and_marks_nan() -> None:
    order = ["first", "second", "third"]
    heat = tensors.grad_heatmap(_grads(order, 20, bad=("second", 7)), order)
    assert heat.order == order
    assert set(heat.cells["module"]) == set(order)
    assert heat.markers.select("module", "step", "label").rows() == [("second", 7, "NaN")]
    assert heat.cells.height + heat.markers.height <= CELL_BUDGET


def test_spread_keeps_first_and_last_and_is_evenly_spaced() -> None:
    order = [f"p{i}" for i in range(60)]
    picked = tensors.spread(order, 6)
    assert picked[0] == "p0" and picked[-1] == "p59" and len(picked) == 6
    assert tensors.spread(order[:4], 6) == order[:4]


def test_grad_bands_bucket_steps_keep_extremes_and_mark_nonfinite_buckets() -> None:
    params = [f"p{i}" for i in range(10)]
    grads = _grads(params, 1_000, bad=("p0", 500))
    grads = grads.with_columns(
        pl.when((pl.col("param") == "p9") & (pl.col("step") == 333))
        .then(99.0)
        .otherwise(pl.col("max"))
        .alias("max")
    )
    bands = tensors.grad_bands(grads, params)
    assert bands is not None
    assert bands.params == tensors.spread(params)
    assert bands.points["step"].n_unique() == tensors.BAND_BUCKETS
    assert bands.points.filter(pl.col("param") == "p9")["hi"].max() == 99.0
    assert bands.markers.rows() == [("p0", 491, "NaN/Inf")]
    assert "6 of 10 parameters" in bands.note and "1,000 sampled steps in 100 buckets" in (
        bands.note
    )
