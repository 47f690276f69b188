"""Rules export_parity and export_summary: what a benchmark's numbers make them say."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from analysis import Finding, Severity, diagnose, load_rules, open_store
from tests.analysis import export_cases
from tests.analysis.export_cases import ExportRunBuilder, demo_cnn_benchmark, timed

RULES = {r.id: r for r in load_rules() if r.id.startswith("export_")}


def _findings(root: Path, rule: str, **params: Any) -> list[Finding]:
    overrides = {rule: params} if params else None
    return diagnose(open_store(root), rules=[RULES[rule]], params=overrides).findings


def _run(root: Path, rows: list[dict[str, Any]], run_id: str = "r") -> None:
    ExportRunBuilder(root, run_id).exports(rows).finish().write()


@pytest.mark.parametrize("rule_id", sorted(export_cases.POSITIVE))
def test_each_export_rule_fires_once_on_its_labelled_run(rule_id: str, tmp_path: Path) -> None:
    run = export_cases.POSITIVE[rule_id](tmp_path).write()
    diagnosis = diagnose(open_store(tmp_path), rules=[RULES[rule_id]])
    (finding,) = [f for f in diagnosis.findings if f.run_id == run.run_id]
    assert finding.severity == RULES[rule_id].severity
    assert finding.message and finding.evidence and finding.step == export_cases.STEP
    assert RULES[rule_id].title and RULES[rule_id].seed and len(RULES[rule_id].suggestion) > 20


def test_export_rules_cover_every_shipped_export_rule() -> None:
    assert sorted(RULES) == sorted(export_cases.POSITIVE)


def test_a_healthy_benchmark_gets_no_parity_warning(tmp_path: Path) -> None:
    export_cases.export_benchmarked(tmp_path).write()
    assert _findings(tmp_path, "export_parity") == []


def test_runs_without_exports_are_not_evaluated_with_the_reason(tmp_path: Path) -> None:
    ExportRunBuilder(tmp_path, "trained").scalars("loss", "train", [1.0, 0.5]).finish().write()
    diagnosis = diagnose(open_store(tmp_path), rules=list(RULES.values()))
    assert diagnosis.findings == []
    assert {(n.rule, n.reason) for n in diagnosis.not_evaluated} == {
        ("export_parity", "needs exports"),
        ("export_summary", "needs exports"),
    }


def test_summary_names_the_fastest_format_per_batch_size_and_the_failures(tmp_path: Path) -> None:
    export_cases.export_benchmarked(tmp_path).write()
    (finding,) = _findings(tmp_path, "export_summary")
    assert finding.severity == Severity.INFO and finding.subject == "onnxruntime"
    assert "batch 1: onnxruntime 0.071 ms (4.5x eager's 0.319 ms)" in finding.message
    assert "batch 32: onnxruntime 0.238 ms (5.1x eager's 1.22 ms)" in finding.message
    assert "9 formats measured, 1 failed (fp16)" in finding.message
    per_batch = finding.evidence["per_batch_size"]
    assert [(b["batch_size"], b["format"]) for b in per_batch] == [
        (1, "onnxruntime"),
        (32, "onnxruntime"),
    ]
    assert per_batch[0]["speedup"] == pytest.approx(0.319 / 0.071)
    assert finding.evidence["failed"] == ["fp16"]


def test_summary_skips_a_faster_format_that_breaks_parity(tmp_path: Path) -> None:
    export_cases.export_broken_trace(tmp_path).write()  # the trace is fastest, and wrong
    (finding,) = _findings(tmp_path, "export_summary")
    assert finding.subject == "onnxruntime"
    (warning,) = _findings(tmp_path, "export_parity")
    assert warning.subject == "torchscript_trace"
    assert "loses accuracy: 0.62 against eager's 0.9944 (37.7% lower)" in warning.message
    assert warning.evidence["metric_drop"] == pytest.approx(1 - 0.62 / 0.9944)


def test_an_exact_format_must_match_eager_up_to_rounding(tmp_path: Path) -> None:
    onnx = timed("onnxruntime", {1: 0.07}, max_abs_diff=0.5, max_rel_diff=0.03)
    _run(tmp_path, demo_cnn_benchmark(onnxruntime=onnx))
    (finding,) = _findings(tmp_path, "export_parity")
    assert finding.subject == "onnxruntime"
    assert "does not reproduce eager: outputs differ by up to 0.5 (3.000% of their scale" in (
        finding.message
    )
    assert _findings(tmp_path, "export_parity", exact_tolerance=0.05) == []


def test_a_lossy_format_without_eval_data_is_judged_by_its_outputs(tmp_path: Path) -> None:
    def no_metric(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "metric_name": None, "metric_value": None} for r in rows]

    rows = no_metric(demo_cnn_benchmark())  # pruned: 8% of the scale, int8 0.8%, bf16 0.4%
    _run(tmp_path, rows)
    assert _findings(tmp_path, "export_parity") == []
    (finding,) = _findings(tmp_path, "export_parity", lossy_tolerance=0.05)
    assert finding.subject == "pruned_l1_0.3"
    assert "no eval data measured whether accuracy suffers" in finding.message


def test_a_lossy_format_with_eval_data_is_judged_by_its_accuracy(tmp_path: Path) -> None:
    export_cases.export_benchmarked(tmp_path).write()  # pruned: 8% off, accuracy -0.56%
    assert _findings(tmp_path, "export_parity") == []
    (finding,) = _findings(tmp_path, "export_parity", max_metric_drop=0.005)
    assert finding.subject == "pruned_l1_0.3" and "loses accuracy" in finding.message


def test_non_finite_outputs_are_always_flagged(tmp_path: Path) -> None:
    bf16 = timed("bf16", {1: 0.7}, max_abs_diff=math.nan, max_rel_diff=math.nan)
    _run(tmp_path, demo_cnn_benchmark(bf16=bf16))
    (finding,) = _findings(tmp_path, "export_parity")
    assert finding.subject == "bf16" and "non-finite outputs" in finding.message


def test_only_the_latest_benchmark_of_a_run_counts(tmp_path: Path) -> None:
    broken = timed("onnxruntime", {1: 0.07}, max_abs_diff=3.0, max_rel_diff=0.5)
    run = ExportRunBuilder(tmp_path, "r")
    run.exports(demo_cnn_benchmark(onnxruntime=broken), step=100)
    run.exports(demo_cnn_benchmark(), step=200).finish().write()
    assert _findings(tmp_path, "export_parity") == []
    (summary,) = _findings(tmp_path, "export_summary")
    assert summary.step == 200


def test_each_run_is_judged_on_its_own_benchmark(tmp_path: Path) -> None:
    export_cases.export_benchmarked(tmp_path).write()
    export_cases.export_broken_trace(tmp_path).write()
    warnings = _findings(tmp_path, "export_parity")
    assert [(f.run_id, f.subject) for f in warnings] == [("broken-trace", "torchscript_trace")]
    assert len(_findings(tmp_path, "export_summary")) == 2


def test_summary_claims_no_speed_up_over_eager_when_the_intervals_overlap(tmp_path: Path) -> None:
    # onnxruntime's p50 is lower, but the noise of both covers the difference.
    onnx = timed("onnxruntime", {1: 0.30}, spread=0.2, max_abs_diff=0.0, max_rel_diff=0.0)
    eager = timed("eager", {1: 0.32}, spread=0.2, max_abs_diff=0.0, max_rel_diff=0.0)
    _run(tmp_path, [*eager, *onnx])
    (finding,) = _findings(tmp_path, "export_summary")
    assert "batch 1: onnxruntime 0.3 ms (not faster than eager's 0.32 ms beyond the noise: " in (
        finding.message
    )
    assert "x eager" not in finding.message
    (batch,) = finding.evidence["per_batch_size"]
    assert batch["vs_eager"] == "overlap" and batch["speedup"] is None
    assert batch["tied"] == ["eager"] and finding.subject is None


def test_summary_refuses_to_rank_formats_whose_intervals_overlap(tmp_path: Path) -> None:
    trace = timed("torchscript_trace", {1: 0.072, 32: 0.738}, max_abs_diff=0.0, max_rel_diff=0.0)
    _run(tmp_path, demo_cnn_benchmark(torchscript_trace=trace))  # onnxruntime: 0.071 ms at 1
    (finding,) = _findings(tmp_path, "export_summary")
    assert (
        "batch 1: onnxruntime 0.071 ms (4.5x eager's 0.319 ms), not distinguishable from "
        "torchscript_trace (intervals overlap)" in finding.message
    )
    assert "batch 32: onnxruntime 0.238 ms (5.1x eager's 1.22 ms);" in finding.message
    assert finding.subject is None, "no single fastest format at the smallest batch size"
    per_batch = finding.evidence["per_batch_size"]
    assert [b["tied"] for b in per_batch] == [["torchscript_trace"], []]


def test_rows_without_intervals_are_never_ranked(tmp_path: Path) -> None:
    rows = [
        *timed("eager", {1: 0.319}, spread=None, max_abs_diff=0.0, max_rel_diff=0.0),
        *timed("onnxruntime", {1: 0.071}, spread=None, max_abs_diff=0.0, max_rel_diff=0.0),
    ]
    _run(tmp_path, rows)  # as written before latency intervals were measured
    (finding,) = _findings(tmp_path, "export_summary")
    assert "not faster than eager's 0.319 ms beyond the noise" in finding.message
    assert finding.evidence["per_batch_size"][0]["speedup"] is None


def test_one_parity_verdict_for_the_rule_and_the_macro(tmp_path: Path) -> None:
    """A pruned model 18 % off eager, without eval data: export_parity flags it, and the
    export_verdicts macro (what export-bench's table prints) says the same."""
    pruned = timed("pruned_l1_0.5", {1: 0.3}, max_abs_diff=1.8, max_rel_diff=0.18)
    eager = timed("eager", {1: 0.3}, max_abs_diff=0.0, max_rel_diff=0.0)
    _run(tmp_path, [*eager, *pruned])
    (finding,) = _findings(tmp_path, "export_parity")
    assert finding.subject == "pruned_l1_0.5" and finding.evidence["verdict"] == "outputs differ"
    params = RULES["export_parity"].params
    verdicts = open_store(tmp_path).sql(
        "SELECT format, parity, parity_failed FROM export_verdicts("
        "$exact_tolerance, $lossy_tolerance, $max_metric_drop) ORDER BY format",
        params,
    )
    assert verdicts.rows() == [
        ("eager", "baseline", False),
        ("pruned_l1_0.5", "outputs differ", True),
    ]


def test_summary_says_so_when_eager_itself_is_fastest(tmp_path: Path) -> None:
    eager = timed("eager", {1: 0.1}, max_abs_diff=0.0, max_rel_diff=0.0)
    onnx = timed("onnxruntime", {1: 0.3}, max_abs_diff=0.0, max_rel_diff=0.0)
    _run(tmp_path, [*eager, *onnx])
    (finding,) = _findings(tmp_path, "export_summary")
    assert "batch 1: eager 0.1 ms (no export format is faster);" in finding.message
    assert finding.subject == "eager"
