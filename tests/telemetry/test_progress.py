"""Progress and output: a bar on a terminal only (stderr), --quiet, no colour off a
terminal or with NO_COLOR, and an example in every verb's --help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

import telemetry.demo
import telemetry.progress
from telemetry.cli import main
from tests.telemetry.test_cli import _store  # a healthy and a diverged run


def test_every_verb_has_an_example_in_its_help() -> None:
    runner = CliRunner()
    assert "Example" in runner.invoke(main, ["--help"]).output
    for verb in main.commands:  # type: ignore[attr-defined]
        result = runner.invoke(main, [verb, "--help"])
        assert result.exit_code == 0, verb
        assert "Example" in result.output, verb


def test_analyze_draws_a_bar_over_the_rules_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(_store(tmp_path))
    plain = CliRunner().invoke(main, ["analyze", root, "--format", "json", "--fail-on", "never"])
    monkeypatch.setattr(telemetry.progress, "_terminal", lambda: True)
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", root, "--format", "json", "--fail-on", "never"])
    assert result.exit_code == 0
    assert result.stdout == plain.stdout  # the bar never touches the result
    assert "analyzing" in result.stderr and "rule/s" in result.stderr
    quiet = runner.invoke(main, ["analyze", root, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_no_bar_and_no_colour_off_a_terminal(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(_store(tmp_path))])
    assert result.stderr == ""
    assert "\x1b[" not in result.output


def test_no_color_turns_colour_off_even_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(_store(tmp_path))
    runner = CliRunner()
    assert "\x1b[" in runner.invoke(main, ["analyze", root], color=True).output
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in runner.invoke(main, ["analyze", root], color=True).output


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> telemetry.demo.Scenario:
    """The demo's healthy CNN for 2 epochs on 32 images, without the export benchmark."""
    tiny = dataclasses.replace(
        telemetry.demo.SCENARIOS[0], epochs=2, train_subset=32, export_bench=False
    )
    monkeypatch.setattr(telemetry.demo, "SCENARIOS", (tiny,))
    return tiny


@pytest.mark.slow  # trains twice: ~10 s with torch's import
def test_demo_ticks_every_epoch_and_quiet_prints_only_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_demo: telemetry.demo.Scenario
) -> None:
    monkeypatch.setattr(telemetry.progress, "_terminal", lambda: True)
    report = tmp_path / "r.html"
    args = ["demo", "--out", str(tmp_path / "runs"), "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "training" in result.stderr and "2/2" in result.stderr  # the bar reached the end
    assert "healthy: small CNN" in result.stderr  # status lines above the bar
    assert "findings:" in result.stdout and f"wrote {report}" in result.stdout
    quiet = CliRunner().invoke(main, [*args, "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout == f"wrote {report}\n"
