"""The report against a hostile store: names that are code, and more than one page can draw.

Names: every string a run wrote (metric, split, parameter, module, run name, config
key, export format) reaches a chart only as a data value. Vega-Lite compiles each
embedded spec to Vega with none of them in an expression or a field name, and Vega
draws every chart (vl-convert runs the Vega and Vega-Lite the page inlines, headless).
A lone surrogate, valid in JSON text but not in UTF-8, cannot stop the page from
being written.

Sizes: 1,000 metrics, 1,000 parameters, a long run of NaN, or more runs than a page
details each give a page of at most 5 MB that says what it left out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import vl_convert

from analysis import Diagnosis, Finding, Severity, open_store
from reports import budget, write_report
from store.records import Rows
from store.schema import Stream
from tests.analysis.export_cases import ExportRunBuilder, timed
from tests.builders import RunBuilder
from tests.reports import pages
from tests.reports.pages import Parts, datasets, open_undiagnosed

SPECIALS = (
    'x"y',
    "a\\b",
    'a\\"b',
    "${alert(1)}",
    "a.b",
    "w[0]",
    "</script><script>alert(1)</script>",
    "two\nlines",
)
"""What breaks a string spliced into code: quotes, backslashes, templates, paths, markup."""

TOKEN = "zq"
"""In every hostile name: an expression or a field name holding it is a leak."""

EXPRESSIONS = {"signal", "expr", "test", "calculate", "filter", "labelExpr", "update", "init"}
"""Keys of a compiled Vega spec whose string values are expression source."""

FIELDS = {"field", "fields", "as", "groupby", "key"}
"""Keys of a Vega-Lite spec whose values name fields."""

T0 = 1_700_000_000.0
MAX_PAGE_BYTES = 5_000_000
"""The README's bound on a report's size."""


def hostile(kind: str) -> list[str]:
    return [f"{TOKEN}{kind}{i}{s}" for i, s in enumerate(SPECIALS)]


def composite(kind: str) -> str:
    """Every special in one name: for what a page shows few of (runs, sampled modules)."""
    return f"{TOKEN}{kind}{''.join(SPECIALS)}"


RUN_NAMES = {"a": composite("run"), "b": composite("other run")}


def _hostile_run(root: Path, run_id: str, *, lr: float, start: float) -> None:
    config = {k: f"{v}{lr}" for k, v in zip(hostile("key"), hostile("value"), strict=True)}
    run = ExportRunBuilder(root, run_id, name=RUN_NAMES[run_id], config=config, start=start)
    steps = list(range(1, 7))
    for i, metric in enumerate(hostile("metric")):
        # a goal, so the comparison has a "best" of each (names without goal words)
        run.event("metric_defined", {"name": metric, "goal": "min"}, step=0)
        run.scalars(metric, "train", [1.0 / (s + i) for s in steps])
        run.scalars(metric, "val", [lr + 1.0 / (s + i) for s in steps[::2]], steps=steps[::2])
    for split in hostile("split"):
        run.scalars("loss", split, [2.0, 1.0, math.nan])
    for group in hostile("group"):
        run.scalars(f"lr.group{group}", "train", [0.1] * len(steps))
    for depth, param in enumerate(hostile("param")):
        for kind in ("grad", "weight", "update"):
            run.tensors(param, kind, [0.1 * (depth + 1), math.inf, 0.0, 0.2, 0.3, 0.4])
    for module in hostile("module"):
        run.activations(module, module, steps, dead_frac=0.3, saturated_frac=0.2, std=0.0)
    pre = [3.0, math.nan, 0.0, 2.0, 0.5, 4.0]
    at = [1.0, math.nan, 0.0, 1.0, 0.5, 1.0]
    ratio = [1 / 3, None, None, 0.5, None, 0.25]
    n = len(steps)
    run.system([0.02] * n, [0.01] * n, grad_norm=pre, grad_norm_step=at, clip_ratio=ratio)
    formats = [row for fmt in hostile("format") for row in timed(fmt, {1: 0.3, 32: 1.2})]
    run.exports([{**row, "size_bytes": 1000 + i} for i, row in enumerate(formats)], step=6)
    run.fail("ValueError", hostile("message")[0]).write()
    maps = [[[0, 255], [128, 64]]]
    samples = {2: [pages.sample(composite("maps"), "feature_map", maps, [0.0], [1.0])]}
    pages.samples(root, run_id, samples)
    pages.event(root, run_id, "nonfinite_origin", {"module": hostile("origin")[0]}, step=3)


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every chart of a page whose runs use a hostile name for everything they name."""
    root = tmp_path_factory.mktemp("hostile-names")
    _hostile_run(root, "a", lr=0.1, start=T0)
    _hostile_run(root, "b", lr=0.2, start=T0 + 1_000)
    store, diagnosis = open_undiagnosed(root)
    out = write_report(store, diagnosis, root.parent / "report.html")
    return Parts(out.read_text(encoding="utf-8")).chart_specs()


def _strings(node: Any, keys: set[str], *, inside: bool = False) -> Iterator[str]:
    """Every string under one of ``keys`` (at any depth below it) in ``node``."""
    if isinstance(node, str):
        if inside:
            yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, keys, inside=inside or k in keys)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, keys, inside=inside)


def _title(spec: dict[str, Any]) -> str:
    t = spec.get("title")
    return str(t.get("text") if isinstance(t, dict) else t)


def test_the_hostile_page_draws_every_kind_of_chart(specs: list[dict[str, Any]]) -> None:
    titles = " | ".join(_title(s) for s in specs)
    for expected in (
        "all runs",
        "learning rate",
        "gradient norm per parameter",
        "gradient distribution",
        "update / weight ratio",
        "share of exact zeros per module",
        "dead units",
        "step time",
        "global gradient norm per optimizer step",
        "latency vs size",
        "hyperparameters vs best val",
        "feature maps",
    ):
        assert expected in titles, expected
    decoded = json.dumps(specs)
    kinds = ("metric", "split", "group", "param", "module", "key", "format")
    for name in [*(n for k in kinds for n in hostile(k)), *RUN_NAMES.values(), composite("maps")]:
        assert json.dumps(name)[1:-1] in decoded, f"{name!r} is shown"


def test_no_run_string_reaches_a_vega_expression(specs: list[dict[str, Any]]) -> None:
    leaks = []
    for spec in specs:
        vega = vl_convert.vegalite_to_vega(spec, vl_version="6.4")
        leaks += [(_title(spec), e) for e in _strings(vega, EXPRESSIONS) if TOKEN in e]
    assert leaks == []


def test_no_run_string_names_a_field(specs: list[dict[str, Any]]) -> None:
    leaks = [(_title(s), f) for s in specs for f in _strings(s, FIELDS) if TOKEN in f]
    assert leaks == []


def test_vega_draws_every_chart_with_hostile_names(specs: list[dict[str, Any]]) -> None:
    failed = []
    for spec in specs:
        try:
            vl_convert.vegalite_to_svg(spec, vl_version="6.4")
        except ValueError as e:
            failed.append((_title(spec), str(e).splitlines()[:2]))
    assert failed == []


def test_a_lone_surrogate_cannot_stop_the_page_from_being_written(tmp_path: Path) -> None:
    # JSON text may hold "\udc80"; decoded, it is a str that UTF-8 cannot encode.
    run = RunBuilder(tmp_path, "r")
    run.scalars("loss", "train", [1.0, math.nan]).fail("ValueError", "nan").write()
    pages.event(tmp_path, "r", "nonfinite_origin", {"module": "conv\udc80", "step": 2}, step=2)
    store = open_store(tmp_path)
    runs = store.sql("SELECT * FROM runs")
    finding = Finding("nonfinite", Severity.ERROR, "r", "conv\udc80", 2, "NaN in \ud800", "look")
    out = write_report(store, Diagnosis(runs, [finding]), tmp_path / "report.html")
    text = Parts(out.read_text(encoding="utf-8")).plain_text
    assert "conv\ufffd" in text and "NaN in \ufffd" in text


# -- more than a page can draw ---------------------------------------------------------------


def _scalars(
    root: Path, run_id: str, names: Sequence[str], steps: Sequence[int], split: str = "train"
) -> None:
    """One row per name per step, written in one segment (fast for many rows)."""
    batches = [
        Rows(
            Stream.SCALARS,
            step,
            None,
            T0 + step,
            {
                "name": list(names),
                "split": [split] * len(names),
                "value": [1.0 / (step + i) for i in range(len(names))],
            },
        )
        for step in steps
    ]
    pages.write_stream(root, run_id, Stream.SCALARS, batches)


def _tensors(
    root: Path, run_id: str, params: Sequence[str], steps: Sequence[int], kinds: Sequence[str]
) -> None:
    n = len(params) * len(kinds)
    batches = [
        Rows(
            Stream.TENSORS,
            step,
            None,
            T0 + step,
            {
                "param": [p for _ in kinds for p in params],
                "kind": [k for k in kinds for _ in params],
                "numel": [100] * n,
                "norm": [(1 + i % 7) * 1.1**-step for i in range(n)],
                "mean": [0.0] * n,
                "std": [0.01] * n,
                "min": [-0.1] * n,
                "max": [0.1] * n,
            },
        )
        for step in steps
    ]
    pages.write_stream(root, run_id, Stream.TENSORS, batches)


def _page(out: Path) -> tuple[int, Parts]:
    return out.stat().st_size, Parts(out.read_text(encoding="utf-8"))


def test_a_thousand_metrics_give_a_bounded_page_that_names_what_it_left_out(
    tmp_path: Path,
) -> None:
    metrics = [f"metric.{i:04d}" for i in range(1_000)]
    RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0] * 200).scalars(
        "acc", "val", [0.5, 0.6], steps=[100, 200]
    ).finish().write()
    _scalars(tmp_path, "r", metrics, range(1, 201))
    store, diagnosis = open_undiagnosed(tmp_path)
    spike = Finding("loss_spike", Severity.WARNING, "r", "metric.0999/train", 50, "spike", "look")
    out = write_report(store, Diagnosis(diagnosis.runs, [spike]), tmp_path / "report.html")
    size, parts = _page(out)
    assert size <= MAX_PAGE_BYTES
    drawn = [_title(s) for s in parts.chart_specs() if _title(s) != "learning rate"]
    limit = budget.Budget().metric_charts
    assert len(drawn) == limit
    assert drawn[:2] == ["loss", "acc"], "loss- and accuracy-like names first"
    assert "metric.0999" in drawn, "the metric a finding names is drawn"
    text = parts.plain_text
    assert f"Curves for {limit} of 1,002 metrics" in text
    left_out = sorted(set(metrics) - set(drawn))
    assert f"left out: {left_out[0]}, {left_out[1]}" in text
    assert "telemetry query" in text


def test_a_thousand_parameters_draw_a_bounded_number_of_lines_and_say_so(
    tmp_path: Path,
) -> None:
    params = [f"blocks.{i}.weight" for i in range(1_000)]
    RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0, 0.5]).finish().write()
    _tensors(tmp_path, "r", params, range(1, 61), ("grad", "weight", "update"))
    store, diagnosis = open_undiagnosed(tmp_path)
    named = Finding("nonfinite", Severity.ERROR, "r", "grad of blocks.500.weight", 3, "m", "s")
    out = write_report(store, Diagnosis(diagnosis.runs, [named]), tmp_path / "report.html")
    size, parts = _page(out)
    assert size <= MAX_PAGE_BYTES
    lines = budget.Budget().lines
    per_param = [s for s in parts.chart_specs() if _title(s).endswith("per parameter")]
    assert len(per_param) == 3
    for spec in per_param:
        names = {r["param"] for r in datasets(spec) if "param" in r}
        assert len(names) == lines and "blocks.500.weight" in names
        assert {"blocks.0.weight", "blocks.999.weight"} <= names, "spread over the depth"
    assert parts.plain_text.count(f"Lines for {lines} of 1,000 parameters") == 3


def test_a_long_run_of_nan_draws_a_bounded_number_of_marks(tmp_path: Path) -> None:
    steps = 50_000
    values = [1.0 if s < 100 else math.nan for s in range(1, steps + 1)]
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    out = write_report(*open_undiagnosed(tmp_path), tmp_path / "report.html")
    size, parts = _page(out)
    assert size <= MAX_PAGE_BYTES
    (spec,) = parts.chart_specs()
    marks = [r for r in datasets(spec) if "label" in r]
    assert len(marks) == budget.Budget().markers
    assert marks[0]["step"] == 100
    assert re.search(
        r"49,901 values could not be drawn \(NaN; first at step 100\): red marks for the "
        r"first [\d,]+",
        parts.plain_text,
    )


def test_more_runs_than_a_page_details_share_its_budget(tmp_path: Path) -> None:
    # Every kind of chart, each beyond a crowded page's share: the page's worst case.
    runs = budget.MAX_CHARTED_RUNS + 2
    params = [f"layer{i}.weight" for i in range(60)]
    modules = [(f"block{i}.act", "ReLU") for i in range(30)]
    metrics = ["loss", "acc", *(f"metric.{m:02d}" for m in range(20)), "lr", "lr.group1"]
    big = [[[(x * y) % 256 for x in range(32)] for y in range(32)]] * 16
    summary = [{"module": f"m{i}", "module_type": "Linear", "depth": 1} for i in range(400)]
    for r in range(runs):
        run_id = f"run{r:02d}"
        config = {f"knob{k}": r * k for k in range(40)}
        run = RunBuilder(tmp_path, run_id, config=config, start=T0 + r)
        pre = [2.0 + (s % 11) for s in range(3_000)]
        run.system(
            [0.02 + (s % 7) / 1e3 for s in range(3_000)],
            [0.005] * 3_000,
            grad_norm=pre,
            grad_norm_step=[min(p, 5.0) for p in pre],
            clip_ratio=[5.0 / p if p > 5.0 else None for p in pre],
        )
        run.finish().write()
        _scalars(tmp_path, run_id, metrics, range(1, 3_001))
        _scalars(tmp_path, run_id, metrics[:-2], range(300, 3_001, 300), "val")
        _tensors(tmp_path, run_id, params, range(10, 3_001, 10), ("grad", "weight", "update"))
        frac = {"dead_frac": 0.3, "saturated_frac": 0.1}
        pages.activations(tmp_path, run_id, modules, range(20, 3_001, 20), **frac)
        sample = pages.sample("conv", "feature_map", big, [0.0] * 16, [1.0] * 16)
        layers = [{**sample, "module": f"conv{i}"} for i in range(6)]
        pages.samples(tmp_path, run_id, {1: layers, 3_000: layers})
        pages.modules(tmp_path, run_id, summary)
    store, diagnosis = open_undiagnosed(tmp_path)
    out = write_report(store, diagnosis, tmp_path / "report.html", max_runs=None)
    size, parts = _page(out)
    assert size <= MAX_PAGE_BYTES
    text = parts.plain_text
    assert f"Charts for the {budget.MAX_CHARTED_RUNS} most recently started of {runs} runs" in text
    assert all(f"run{r:02d}" in text for r in range(runs)), "the runs table lists every run"


def test_thousands_of_config_keys_and_val_metrics_keep_the_tables_bounded(tmp_path: Path) -> None:
    runs, keys = 40, 2_000
    for r in range(runs):
        config = {f"knob{k:04d}": r * k for k in range(keys)}
        run = RunBuilder(tmp_path, f"run{r:02d}", config=config, start=T0 + r)
        run.event("metric_defined", {"name": "val.000", "goal": "max"}, step=0)
        run.finish().write()
        _scalars(tmp_path, f"run{r:02d}", [f"val.{m:03d}" for m in range(300)], [1], "val")
    out = write_report(*open_undiagnosed(tmp_path), tmp_path / "report.html")
    size, parts = _page(out)
    assert size <= MAX_PAGE_BYTES
    text = parts.plain_text
    assert re.search(r"knob0000=0 .*… and 1,9\d\d more", text), "each run's config, cut"
    assert "val.000 " in text and "… and 29" in text, "each run's metrics, cut"
    assert re.search(r"1,9\d\d more varying configuration keys", text), "comparison columns"
