"""The report against a hostile store: names that are code, and more than one page can draw.

Names: every string a run wrote (metric, split, parameter, module, run name, config
key, export format) reaches a chart only as a data value. Vega-Lite compiles each
embedded spec to Vega with none of them in an expression or a field name, and Vega
draws every chart (vl-convert runs the Vega and Vega-Lite the page inlines, headless).
A lone surrogate, valid in JSON text but not in UTF-8, cannot stop the page from
being written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vl_convert

from analysis import Diagnosis, Finding, Severity, open_store
from reports import write_report
from tests.analysis.export_cases import ExportRunBuilder, timed
from tests.builders import RunBuilder
from tests.reports import pages
from tests.reports.pages import Parts, open_undiagnosed

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
    run.system([0.02] * len(steps), [0.01] * len(steps))
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
