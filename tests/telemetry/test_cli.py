"""The telemetry command line, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from telemetry.cli import EXIT_FINDINGS, EXIT_STORE, main
from tests.analysis import cases


def _store(tmp_path: Path) -> Path:
    cases.healthy(tmp_path).write()
    cases.divergence(tmp_path).write()
    return tmp_path


def test_help_of_every_verb_shows_an_example() -> None:
    runner = CliRunner()
    for verb in ("analyze", "report", "demo"):
        result = runner.invoke(main, [verb, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output


def test_analyze_table_lists_runs_and_findings(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(_store(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "healthy (healthy): no warnings or errors" in result.output
    assert "ERROR   divergence step 44" in result.output
    assert "fix: Lower the learning rate" in result.output


def test_analyze_json_has_the_documented_shape(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(_store(tmp_path)), "--format", "json"])
    assert result.exit_code == EXIT_FINDINGS  # json defaults to --fail-on error
    data = json.loads(result.output)
    assert set(data) == {"runs", "findings", "not_evaluated"}
    run = data["runs"][0]
    assert {"run_id", "name", "status", "steps", "config"} <= set(run)
    assert data["runs"][1]["config"] == {"lr": 0.001} or data["runs"][0]["config"] == {"lr": 0.001}
    finding = next(f for f in data["findings"] if f["rule"] == "divergence")
    assert set(finding) == {
        "rule",
        "severity",
        "run_id",
        "subject",
        "step",
        "message",
        "suggestion",
        "evidence",
    }
    assert finding["severity"] == "error" and finding["run_id"] == "diverged"


def test_fail_on_sets_the_exit_code(tmp_path: Path) -> None:
    store = str(_store(tmp_path))
    runner = CliRunner()
    assert runner.invoke(main, ["analyze", store]).exit_code == 0
    assert runner.invoke(main, ["analyze", store, "--fail-on", "error"]).exit_code == EXIT_FINDINGS
    healthy_only = ["analyze", store, "--run", "healthy", "--fail-on", "warning"]
    assert runner.invoke(main, healthy_only).exit_code == 0
    as_json = ["analyze", store, "--format", "json", "--fail-on", "never"]
    assert runner.invoke(main, as_json).exit_code == 0


def test_unknown_run_and_missing_store_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", str(_store(tmp_path)), "--run", "nope"])
    assert result.exit_code == EXIT_STORE
    assert "nope" in result.output and "healthy" in result.output
    result = runner.invoke(main, ["analyze", str(tmp_path / "missing")])
    assert result.exit_code == EXIT_STORE
    assert "does not exist" in result.output


def test_analyze_empty_store_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert result.exit_code == 0
    assert "no runs" in result.output


def test_report_writes_one_self_contained_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(main, ["report", str(_store(tmp_path / "runs")), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "2 runs" in result.output
    html = out.read_text()
    assert "diverged" in html and "divergence" in html
    assert "<script src" not in html


def test_report_of_one_run_leaves_the_others_out(tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    store = str(_store(tmp_path / "runs"))
    result = CliRunner().invoke(main, ["report", store, "--run", "healthy", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "diverged" not in out.read_text()
