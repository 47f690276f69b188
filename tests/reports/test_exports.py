"""The export benchmarks section: latency vs size chart, a table per batch size, escaped."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import vl_convert

from analysis import diagnose, open_store
from reports import data, exports, render_report
from reports.blocks import to_spec
from reports.charts.exports import latency_size_chart
from tests.analysis import export_cases
from tests.analysis.export_cases import ExportRunBuilder, demo_cnn_benchmark, failed, timed
from tests.reports.pages import HOSTILE, Parts, datasets, open_undiagnosed, trained

ENV = json.dumps(
    {
        "torch": "2.14.1",
        "onnxruntime": "1.32.0",
        "threads": 2,
        "device": "cpu",
        "hardware": "x86_64 (AVX2)",
        "inputs": [{"shape": [32, 1, 8, 8], "dtype": "torch.float32"}],
    }
)


def _with_env(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "env": ENV} for r in rows]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Parts]:
    """A trained run without a benchmark, and the broken-trace benchmark, fully diagnosed."""
    root = tmp_path_factory.mktemp("store")
    trained(root, "plain", name="plain")
    run = ExportRunBuilder(root, "bench", name="cnn")
    run.exports(_with_env(export_cases.demo_cnn_benchmark(torchscript_trace=_broken_trace())))
    run.finish().write()
    store = open_store(root)
    html = render_report(store, diagnose(store))
    return html, Parts(html)


def _broken_trace() -> list[dict[str, Any]]:
    return timed(
        "torchscript_trace", {1: 0.05, 32: 0.2}, size_bytes=173_033, max_abs_diff=7.0,
        max_rel_diff=0.4, metric_name="accuracy", metric_value=0.62,
    )  # fmt: skip


def _table_rows(html: str, batch: int) -> list[list[str]]:
    """Cell texts of the rows of the export table for ``batch``."""
    start = html.index(f"<h4>batch size {batch}</h4>")
    body = html[html.index("<tbody>", start) : html.index("</tbody>", start)]
    return [
        [" ".join(Parts("<td" + td).plain_text.split()) for td in tr.split("<td")[1:]]
        for tr in body.split("<tr")[1:]
    ]


def test_the_section_comes_before_the_run_comparison_and_is_linked(
    page: tuple[str, Parts],
) -> None:
    html, parts = page
    assert [s for s in parts.sections if s in ("system", "exports", "comparison")][-2:] == [
        "exports",
        "comparison",
    ] or parts.sections[-1] == "exports"
    assert '<a href="#exports">Export benchmarks</a>' in html
    assert "No export benchmark recorded for: plain." in parts.plain_text


def test_tables_per_batch_size_fastest_first_failures_apart(page: tuple[str, Parts]) -> None:
    html, parts = page
    for batch in (1, 32):
        rows = _table_rows(html, batch)
        formats = [r[0] for r in rows]
        assert len(formats) == 8 and "fp16" not in formats
        p50s = [float(r[2].split()[0]) for r in rows]
        assert p50s == sorted(p50s)
    assert _table_rows(html, 1)[0][:3] == ["torchscript_trace", "ok", "0.050 [0.048, 0.053]"]
    assert "fp16 failed: FormatUnavailable: fp16 is measured on CUDA only" in parts.plain_text
    text = parts.plain_text
    assert "Measured at step 276: torch 2.14.1, onnxruntime 1.32.0, 2 threads on cpu" in text
    assert "example input 32x1x8x8 torch.float32" in text


def test_rows_carry_parity_accuracy_and_the_rules_verdicts(page: tuple[str, Parts]) -> None:
    html, _ = page
    rows = {r[0]: r for r in _table_rows(html, 1)}
    trace = rows["torchscript_trace"]
    assert trace[7:10] == ["7", "40.00%", "0.6200"]  # max |diff|, rel diff, accuracy
    assert "beyond tolerance" in trace[-1]
    assert rows["onnxruntime"][7:10] == ["2.9e-06", "1.6e-05%", "0.9944"]
    assert rows["onnxruntime"][-1] == "fastest", "the fastest format within tolerance"
    assert "fastest" not in trace[-1], "the broken trace is faster but not eligible"
    assert rows["pruned_l1_0.3"][10] == "29.90%"  # sparsity
    assert '<tr class="flagged">' in html


def test_chart_draws_timed_rows_and_rings_the_flagged_format(page: tuple[str, Parts]) -> None:
    _, parts = page
    (spec,) = [s for s in parts.chart_specs() if "latency" in json.dumps(s.get("title", ""))]
    rows = datasets(spec)
    assert len(rows) == 16  # 8 formats x 2 batch sizes; fp16 never ran
    assert {r["format"] for r in rows if r["flagged"]} == {"torchscript_trace"}
    trace = next(r for r in rows if r["format"] == "torchscript_trace" and r["batch"] == "1")
    assert trace["size_kb"] == pytest.approx(173.033) and trace["parity"] == "7, 40.00%"
    vl_convert.vegalite_to_vega(spec, vl_version="6.4")


def test_hostile_format_names_and_errors_are_escaped(tmp_path: Path) -> None:
    rows = demo_cnn_benchmark(fp16=failed(HOSTILE, f"RuntimeError: {HOSTILE}"))
    rows += timed(HOSTILE, {1: 0.2}, size_bytes=1000, max_abs_diff=0.0, max_rel_diff=0.0)
    ExportRunBuilder(tmp_path, "r").exports(rows).finish().write()
    html = render_report(*open_undiagnosed(tmp_path))
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; failed: RuntimeError:" in html
    assert "\\u003cscript\\u003e" in html  # inside the chart's JSON


def test_nan_parity_is_spelled_out_and_never_reaches_the_json(tmp_path: Path) -> None:
    bf16 = timed("bf16", {1: 0.7}, size_bytes=80_375, max_abs_diff=math.nan, max_rel_diff=math.nan)
    ExportRunBuilder(tmp_path, "r").exports(demo_cnn_benchmark(bf16=bf16)).finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    html = render_report(store, diagnosis)  # script_json refuses NaN: this would raise
    rows = {r[0]: r for r in _table_rows(html, 1)}
    assert rows["bf16"][7:9] == ["NaN", "NaN"]


def test_only_the_latest_benchmark_of_a_run_is_shown(tmp_path: Path) -> None:
    run = ExportRunBuilder(tmp_path, "r")
    run.exports([*timed("eager", {1: 9.0}, size_bytes=10)], step=10)
    run.exports(_with_env(timed("eager", {1: 1.0}, size_bytes=10)), step=20).finish().write()
    loaded = data.load(*open_undiagnosed(tmp_path)).per_run[0]
    assert loaded.exports is not None
    assert loaded.exports.select("step", "latency_p50_ms").rows() == [(20, 1.0)]


def test_a_run_without_a_benchmark_gets_no_section(tmp_path: Path) -> None:
    trained(tmp_path, "plain")
    _, parts = open_and_render(tmp_path)
    assert "exports" not in parts.sections


def open_and_render(root: Path) -> tuple[str, Parts]:
    html = render_report(*open_undiagnosed(root))
    return html, Parts(html)


def test_environment_line_survives_a_missing_or_partial_env() -> None:
    assert exports.environment_line(None) == "environment not recorded"
    assert exports.environment_line("[1, 2]") == "environment not recorded"
    line = exports.environment_line(json.dumps({"torch": "2.14", "threads": 1}))
    assert line == "torch 2.14, onnxruntime not installed, 1 thread on ? (?)"


def test_chart_function_is_pure_and_compiles_with_one_batch_size() -> None:
    import polars as pl

    points = pl.DataFrame(
        {
            "format": ["eager", "onnxruntime"],
            "batch": ["1", "1"],
            "size_kb": [157.0, 166.4],
            "p50_ms": [0.32, 0.07],
            "p90_ms": [0.36, None],
            "throughput": ["3,175", "13,532"],
            "parity": ["0, 0%", "2.9e-06, 1.6e-05%"],
            "metric": ["not measured", "not measured"],
            "flagged": [False, True],
        }
    )
    spec = to_spec(latency_size_chart(points=points))
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["point", "point"]
    vl_convert.vegalite_to_vega(spec, vl_version="6.4")


def test_no_fastest_badge_where_latency_intervals_overlap(tmp_path: Path) -> None:
    trace = timed(
        "torchscript_trace", {1: 0.072, 32: 0.738}, size_bytes=173_033, max_abs_diff=0.0,
        max_rel_diff=0.0,
    )  # fmt: skip  # within the noise of onnxruntime's 0.071 ms at batch 1
    rows = _with_env(demo_cnn_benchmark(torchscript_trace=trace))
    ExportRunBuilder(tmp_path, "r").exports(rows).finish().write()
    store = open_store(tmp_path)
    html = render_report(store, diagnose(store))
    at_1 = {r[0]: r for r in _table_rows(html, 1)}
    assert (
        "fastest" not in at_1["onnxruntime"][-1] and "fastest" not in at_1["torchscript_trace"][-1]
    )
    at_32 = {r[0]: r for r in _table_rows(html, 32)}
    assert at_32["onnxruntime"][-1] == "fastest", "apart from every other format at batch 32"


def test_rows_written_before_intervals_show_the_p50_alone(tmp_path: Path) -> None:
    rows = _with_env(timed("eager", {1: 0.5}, spread=None, size_bytes=10, max_rel_diff=0.0))
    ExportRunBuilder(tmp_path, "r").exports(rows).finish().write()
    html = render_report(*open_undiagnosed(tmp_path))
    assert _table_rows(html, 1)[0][:3] == ["eager", "ok", "0.500"]
