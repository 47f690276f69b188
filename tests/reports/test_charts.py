"""Chart functions: pure DataFrame -> Altair, specs that Vega-Lite compiles."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
import vl_convert

from reports.blocks import to_spec
from reports.charts.curves import NO_SPLIT, lr_chart, metric_chart
from reports.charts.gradients import bands_chart, global_norm_chart, layer_norms_chart
from reports.theme import NONFINITE, SPLIT_COLORS
from tests.reports.pages import legend_labels, marks, texts


def _compiles(spec: dict[str, Any]) -> dict[str, Any]:
    """Vega-Lite's own compiler accepts the spec (stronger than the JSON schema)."""
    vega: dict[str, Any] = vl_convert.vegalite_to_vega(spec, vl_version="6.4")
    return vega


def _scalars(split: str | None, steps: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "split": [split] * len(steps),
            "step": steps,
            "epoch": [None] * len(steps),
            "value": [1.0 / s for s in steps],
        },
        schema={"split": pl.String, "step": pl.Int64, "epoch": pl.Int64, "value": pl.Float64},
    )


def _no_markers(*columns: str) -> pl.DataFrame:
    return pl.DataFrame(
        schema={**{c: pl.String for c in columns}, "step": pl.Int64, "label": pl.String}
    )


def test_sparse_validation_gets_dots_and_dense_training_only_a_line() -> None:
    points = pl.concat([_scalars("train", list(range(1, 501))), _scalars("val", [100, 200])])
    chart = metric_chart(points=points, markers=_no_markers("split"), metric="loss")
    spec = to_spec(chart)
    types = [m["type"] for m in marks(spec)]
    assert types == ["line", "point"]
    dots = spec["layer"][1]["data"]["name"]
    assert {r["split"] for r in spec["datasets"][dots]} == {"val"}
    _compiles(spec)


def test_splits_keep_their_colours_and_unsplit_values_get_a_legend_entry() -> None:
    points = pl.concat([_scalars("val", [1]), _scalars(None, [1]), _scalars("train", [1])])
    spec = to_spec(metric_chart(points=points, markers=_no_markers("split"), metric="m"))
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["train", "val", NO_SPLIT]
    assert scale["range"][:2] == [SPLIT_COLORS["train"], SPLIT_COLORS["val"]]


def test_markers_add_a_red_rule_layer_with_the_label_in_its_tooltip() -> None:
    markers = pl.DataFrame({"split": ["train"], "step": [7], "epoch": [None], "label": ["NaN"]})
    spec = to_spec(metric_chart(points=_scalars("train", [1, 2]), markers=markers, metric="loss"))
    rule = next(m for m in marks(spec) if m["type"] == "rule")
    assert rule["color"] == NONFINITE
    layer = spec["layer"][-1]["layer"][0]
    assert {"field": "label", "title": "value", "type": "nominal"} in layer["encoding"]["tooltip"]
    _compiles(spec)


def test_layer_norms_use_a_log_scale_and_list_parameters_by_depth() -> None:
    points = pl.DataFrame(
        {"param": ["a.out.weight", "z.in.weight"], "step": [1, 1], "norm": [1.0, 1e-6]}
    )
    chart = layer_norms_chart(
        points=points, markers=_no_markers("param"), order=["z.in.weight", "a.out.weight"]
    )
    spec = to_spec(chart)
    encoding = spec["layer"][0]["encoding"]
    assert encoding["y"]["scale"]["type"] == "log"
    assert legend_labels(spec) == ["z.in.weight", "a.out.weight"], "depth order, not alphabetical"
    _compiles(spec)


def test_band_panels_follow_depth_order() -> None:
    stats = {"lo": -1.0, "hi": 1.0, "mean": 0.0, "std_lo": -0.5, "std_hi": 0.5, "n": 1}
    points = pl.DataFrame(
        [{"param": p, "step": s, **stats} for p in ("a.out", "z.in") for s in (1, 2)]
    )
    chart = bands_chart(points=points, markers=_no_markers("param"), params=["z.in", "a.out"])
    panels = [t for t in texts(to_spec(chart), "title-text") if t in (["z.in"], ["a.out"])]
    assert panels == [["z.in"], ["a.out"]], "depth order, not alphabetical"


def test_global_norm_and_lr_charts_compile() -> None:
    norms = pl.DataFrame({"step": [1, 2], "norm": [1.0, 2.0], "params": [3, 3]})
    markers = pl.DataFrame({"step": [3], "params": [3], "label": ["+Inf"]})
    spec = to_spec(global_norm_chart(points=norms, markers=markers))
    assert spec["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    _compiles(spec)
    lr = pl.DataFrame({"name": ["lr", "lr"], "step": [1, 2], "value": [0.1, 0.01]})
    _compiles(to_spec(lr_chart(points=lr, markers=_no_markers("name"))))


@pytest.mark.parametrize("rows", [6_000, 30_000])
def test_frames_beyond_altairs_default_row_limit_are_accepted(rows: int) -> None:
    points = pl.DataFrame(
        {
            "param": [f"p{i % 10}" for i in range(rows)],
            "step": list(range(rows)),
            "norm": [1.0] * rows,
        }
    )
    spec = to_spec(layer_norms_chart(points=points, markers=_no_markers("param"), order=[]))
    drawn = [row for v in spec["datasets"].values() for row in v if "norm" in row]
    assert len(drawn) == rows
    names = [row for v in spec["datasets"].values() for row in v if "param" in row]
    assert len(names) == 10, "each parameter's name is sent once, not with every point"
