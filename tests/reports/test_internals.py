"""The model's inside on the page: summary table, activations, feature maps/filters, NaN origin."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analysis import Diagnosis, Finding, Severity, open_store
from reports import data, heatmap, internals, render_report
from reports.budget import MAP_PIXELS, Budget
from tests.builders import RunBuilder
from tests.reports import pages
from tests.reports.pages import (
    HOSTILE,
    Parts,
    axis_labels,
    datasets,
    named,
    open_undiagnosed,
    trained,
)

NEW_SECTIONS = ["model", "activations", "images", "nan-origin"]
ALL = ("modules", "activations", "samples", "origin")
"""The streams of ``_inside``, in the order of the sections they feed."""

# Forward order differs from name order on purpose: the page must follow `seq`.
FORWARD = [("conv", "Conv2d"), ("act", "ReLU"), (HOSTILE, "Tanh"), ("head.fc", "Linear")]


def _summary_rows() -> list[dict[str, object]]:
    def row(module: str, type_: str, depth: int, own: int, total: int, **kw: object) -> dict:
        parent = None if module == "" else module.rpartition(".")[0]
        return {
            "module": module,
            "module_type": type_,
            "parent": parent,
            "depth": depth,
            "own_params": own,
            "params": total,
            "trainable_params": kw.pop("trainable", total),
            "calls": kw.pop("calls", 1),
            "input_shape": json.dumps([8, 1, 6, 6]),
            "output_shape": json.dumps(kw.pop("out", [8, 4, 4, 4])),
        }

    return [
        row("", "TinyNet", 0, 0, 1_284, trainable=1_244),
        row("conv", "Conv2d", 1, 40, 40, trainable=0),
        row("act", "ReLU", 1, 0, 0, calls=2),
        row(HOSTILE, "Tanh", 1, 0, 0, out=[[8, 64], None]),
        row("head", "Sequential", 1, 0, 1_244),
        row("head.fc", "Linear", 2, 1_244, 1_244, out=[8, 10]),
    ]


def _inside(root: Path, run_id: str = "cnn", *, streams: tuple[str, ...] = ALL) -> None:
    """A run with the streams of issue 3 that ``streams`` names (all four by default)."""
    trained(root, run_id, name="tiny") if "scalars" in streams else RunBuilder(
        root, run_id
    ).finish().write()
    if "modules" in streams:
        pages.modules(root, run_id, _summary_rows())
    if "activations" in streams:
        pages.activations(
            root,
            run_id,
            FORWARD,
            range(1, 61, 5),
            zero_frac=lambda m, s: 0.5 if m == "act" else 0.0,
            std=lambda m, s: 0.0 if (m == "act" and s > 40) else 1.0,
            dead_frac=lambda m, s: s / 100 if m == "act" else None,
            saturated_frac=lambda m, s: 0.2 if m == HOSTILE else None,
        )
    if "samples" in streams:
        fmap = [[[(7 * i + j) % 256 for j in range(6)] for i in range(6)]] * 4
        kernels = [[[10 * k, 20], [30, 40]] for k in range(3)]
        pages.samples(
            root,
            run_id,
            {
                s: [
                    pages.sample("conv", "feature_map", fmap, [-1.0] * 4, [1.0] * 4),
                    pages.sample("conv", "filter", kernels, [-0.1] * 3, [0.1] * 3),
                ]
                for s in (1, 21, 41)
            },
        )
    if "origin" in streams:
        payload = {"module": HOSTILE, "module_type": "Tanh", "nonfinite": 12, "numel": 512}
        pages.event(root, run_id, "nonfinite_origin", payload, step=42)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Parts]:
    root = tmp_path_factory.mktemp("inside")
    _inside(root, streams=("scalars", *ALL))
    trained(root, "plain")
    store = open_store(root)
    runs = store.sql("SELECT * FROM runs ORDER BY run_id")
    finding = Finding(
        "nonfinite", Severity.ERROR, "cnn", HOSTILE, 42, "first non-finite value", "clip", {}
    )
    html = render_report(store, Diagnosis(runs, [finding], []))
    return html, Parts(html)


def test_new_sections_follow_gradients_in_order_and_are_in_the_table_of_contents(
    page: tuple[str, Parts],
) -> None:
    _, parts = page
    expected = ["findings", "runs", "curves", "gradients", *NEW_SECTIONS, "comparison"]
    assert parts.sections == expected
    hrefs = [str(a.get("href")) for tag, a in parts.tags if tag == "a"]
    links = ("#nan-origin-", "#chart-")  # a finding's NaN origin and evidence chart
    toc = [h[1:] for h in hrefs if h.startswith("#") and not h.startswith(links)]
    assert toc == parts.sections


@pytest.mark.parametrize("stream", ALL)
def test_each_section_appears_only_with_its_data(tmp_path: Path, stream: str) -> None:
    _inside(tmp_path, streams=(stream,))
    parts = Parts(render_report(*open_undiagnosed(tmp_path)))
    assert parts.sections == ["findings", "runs", NEW_SECTIONS[ALL.index(stream)]]


def test_model_summary_lists_modules_by_depth_with_torchinfo_totals(
    page: tuple[str, Parts],
) -> None:
    html, parts = page
    text = parts.plain_text
    assert "total params 1,284 trainable params 1,244 non-trainable params 40" in text
    assert "parameter memory 5.02 KiB (assuming float32, 4 bytes per parameter" in text
    table = re.search(r'<table class="modules">(.*?)</table>', html, re.S)
    assert table is not None
    cells = Parts(table.group(1))
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    first = [Parts(r).plain_text for r in rows[1:3]]
    assert first[0].startswith("TinyNet TinyNet [8, 1, 6, 6] [8, 4, 4, 4] 0 1,284 1,244 1")
    assert first[1].startswith("conv Conv2d")
    assert "act ReLU [8, 1, 6, 6] [8, 4, 4, 4] 0 0 0 2 shared" in cells.plain_text
    assert "[[8, 64], null]" in cells.plain_text
    indents = re.findall(r'style="padding-left: ([\d.]+)rem">head(?:\.fc)?<', table.group(1))
    assert indents == ["1.8", "3.0"], "depth 1 and depth 2"
    assert "No model summary recorded for: plain." in text


def test_a_model_whose_children_the_loop_calls_is_not_unused() -> None:
    """A LightningModule's training_step calls self.net: the root's forward never runs
    (calls 0), its children's do; only a child that never ran is unused."""
    rows = [
        {**r, "calls": 0 if r["module"] in ("", "conv") else 1, "input_shape": None}
        for r in _summary_rows()
    ]
    table = {row.name: row for row in map(internals._module_row, rows)}
    root = next(row for row in table.values() if row.root)
    assert not root.unused
    assert table["conv"].unused and not table["head"].unused


def test_summary_totals_count_shared_parameters_once_and_work_without_a_root_row() -> None:
    rows = pl.DataFrame(_summary_rows())
    assert internals.summary_totals(rows) == (1_284, 1_244)
    no_root = rows.filter(pl.col("module") != "")
    # Top-level rows (parent "" is not a row any more): conv 40 + head 1,244.
    assert internals.summary_totals(no_root) == (1_284, 1_244)
    assert internals.format_bytes(1_284 * 4) == "5.02 KiB"
    assert internals.format_bytes(3 * 2**30) == "3.00 GiB"


def test_a_deep_model_summary_is_folded_to_the_depth_that_fits(tmp_path: Path) -> None:
    rows = [{"module": "", "module_type": "Deep", "depth": 0, "params": 1, "calls": 1}]
    for i in range(40):
        rows.append({"module": f"b{i}", "parent": "", "depth": 1, "params": 1, "calls": 1})
        for j in range(10):
            name = f"b{i}.l{j}"
            rows.append({"module": name, "parent": f"b{i}", "depth": 2, "params": 0, "calls": 1})
    RunBuilder(tmp_path, "r").finish().write()
    pages.modules(tmp_path, "r", rows)
    html = render_report(*open_undiagnosed(tmp_path))
    table = re.search(r'<table class="modules">(.*?)</table>', html, re.S)
    assert table is not None and table.group(1).count("<tr") == 1 + 41
    assert "400 of 441 modules not listed (deeper than depth 1)" in Parts(html).plain_text


def _spec(parts: Parts, title: str) -> dict[str, Any]:
    def name(spec: dict[str, Any]) -> str:
        t = spec.get("title")
        return str(t.get("text") if isinstance(t, dict) else t)

    return next(s for s in parts.chart_specs() if name(s) == title)


def test_activation_heatmaps_list_modules_in_forward_order(page: tuple[str, Parts]) -> None:
    _, parts = page
    order = [m for m, _ in FORWARD]
    for title in ("share of exact zeros per module", "std of the output per module (log colour)"):
        spec = _spec(parts, title)
        assert order in axis_labels(spec)
    std = _spec(parts, "std of the output per module (log colour)")
    assert std["layer"][0]["encoding"]["color"]["scale"]["type"] == "log"
    marked = [r for r in named(std) if "label" in r]
    assert {(r["module"], r["label"]) for r in marked} == {("act", "0 (off the log scale)")}
    assert [r["step"] for r in marked] == [41, 46, 51, 56]
    assert "4 cells could not be coloured (0 (off the log scale); first at step 41): red." in (
        parts.plain_text
    )


def test_dead_and_saturated_fractions_are_drawn_only_for_modules_that_have_them(
    page: tuple[str, Parts],
) -> None:
    _, parts = page
    dead = _spec(parts, "dead units (ReLU family)")
    assert {r["module"] for r in named(dead)} == {"act"}
    saturated = _spec(parts, "saturated outputs")
    assert {r["module"] for r in named(saturated)} == {HOSTILE}


def test_filters_then_feature_maps_at_their_first_and_latest_sampled_step(
    page: tuple[str, Parts],
) -> None:
    _, parts = page
    grids = [s for s in parts.chart_specs() if " · " in str(s.get("title"))]
    titles = [(s["title"]["text"], s["title"]["subtitle"]) for s in grids]
    assert titles == [
        ("conv · filters", "step 1"),
        ("conv · filters", "step 41"),
        ("conv · feature maps", "step 1"),
        ("conv · feature maps", "step 41"),
    ]
    text = parts.plain_text
    assert "sampled at 3 steps: 1, 21, 41; drawn: the first and the latest" in text
    assert "3 maps of 2×2; each map scaled on its own" in text
    filters = datasets(grids[0])
    assert [r["b"] for r in filters] == [[10 * k, 20, 30, 40] for k in range(3)]
    assert {(r["lo"], r["hi"]) for r in filters} == {(-0.1, 0.1)}


def test_nan_origin_box_names_module_and_step_and_the_finding_links_to_it(
    page: tuple[str, Parts],
) -> None:
    html, parts = page
    box = re.search(r'<div class="nan-origin" id="nan-origin-1"[^>]*>(.*?)</div>', html, re.S)
    assert box is not None
    said = Parts(box.group(1)).plain_text
    assert said.startswith(
        f"tiny (cnn) The first non-finite value appeared in the output of {HOSTILE}"
    )
    assert "(Tanh) at step 42" in said and "12 of 512 elements non-finite" in said
    links = [a for tag, a in parts.tags if tag == "a" and a.get("href") == "#nan-origin-1"]
    assert len(links) == 1, "the nonfinite finding links to the box"
    assert f"NaN origin: {HOSTILE} at step 42" in parts.plain_text


def test_an_origin_in_the_models_input_says_so(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").finish().write()
    pages.event(tmp_path, "r", "nonfinite_origin", {"module": "(input)", "nonfinite": 1}, step=3)
    pages.event(tmp_path, "r", "nonfinite_origin", {"oops": 1}, step=2)
    text = Parts(render_report(*open_undiagnosed(tmp_path))).plain_text
    assert "The model's input was already non-finite at step 3" in text


def test_hostile_module_names_never_become_markup(page: tuple[str, Parts]) -> None:
    html, parts = page
    assert HOSTILE not in html
    # The table sorter, the bundle, the chart loader, and one JSON block per chart.
    assert [t for t, _ in parts.tags].count("script") == 3 + len(parts.chart_specs())
    assert f"{HOSTILE} Tanh" in parts.plain_text  # the summary table, as text
    decoded = json.dumps(parts.chart_specs())
    assert decoded.count(HOSTILE) >= 3  # the name tables of both heatmaps and the saturated chart


def test_sizes_stay_bounded_for_many_steps_modules_and_sampled_layers(tmp_path: Path) -> None:
    modules = [(f"block{i}.relu", "ReLU") for i in range(heatmap.MAX_ROWS + 10)]
    steps = range(1, 1_001, 10)  # 100 sampled steps of 160 modules
    RunBuilder(tmp_path, "r").finish().write()
    pages.activations(tmp_path, "r", modules, steps, dead_frac=0.1, zero_frac=0.3)
    big = [[[(x * y) % 256 for x in range(64)] for y in range(64)]] * 16
    layer = [
        pages.sample(f"conv{i}", "feature_map", big, [0.0] * 16, [1.0] * 16) for i in range(10)
    ]
    pages.samples(tmp_path, "r", {s: layer for s in (1, 500, 1_000)})
    parts = Parts(render_report(*open_undiagnosed(tmp_path)))
    heatmaps = [s for s in parts.chart_specs() if "per module" in str(s.get("title"))]
    cells = [[r for r in datasets(s) if "step" in r] for s in heatmaps]  # not the name table
    assert [len(c) <= heatmap.CELL_BUDGET for c in cells] == [True, True]
    grids = [s for s in parts.chart_specs() if "facet" in s and isinstance(s["title"], dict)]
    fit = Budget().pixels // (2 * MAP_PIXELS)  # each module: 16 maps at its first and last step
    assert len(grids) == 2 * min(fit, data.MAX_SAMPLED_MODULES)
    assert all(len(r["b"]) == 32 * 32 for s in grids for r in datasets(s))
    text = parts.plain_text
    assert f"{10 - len(grids) // 2} more sampled modules not drawn" in text
    assert f"100 sampled steps drawn as {Budget().cells // heatmap.MAX_ROWS} columns" in text
    assert f"the first {heatmap.MAX_ROWS} of {heatmap.MAX_ROWS + 10} modules" in text
    assert "16 maps of 64×64, drawn at 32×32 (means of 2×2 blocks)" in text
    sizes = [len(body) for attrs, body in parts.scripts if attrs.get("data-chart")]
    assert max(sizes) < 600_000 and sum(sizes) < 2_500_000, sizes
