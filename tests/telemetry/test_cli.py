"""The telemetry command line, through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from analysis import Rule, load_rules
from benchmarks.store_scale import write_run
from store.indexing import record_writer
from telemetry.cli import main
from telemetry.common import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_STORE
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
    lines = result.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "nonfinite" in line and "ERROR" in line)
    # one line: badge, rule, subject, step, message; the suggestion indented under it
    assert lines[at].split()[:5] == ["ERROR", "nonfinite", "loss/train", "step", "44"]
    assert lines[at + 1].lstrip().startswith("fix: Start at the module or tensor")
    assert lines[at + 1].startswith("      ")
    # its consequence under it, pointing back at it instead of repeating a fix
    assert lines[at + 2].split()[:6] == ["->", "ERROR", "divergence", "loss/train", "step", "44"]
    assert "training loss became" in lines[at + 2]
    assert lines[at + 3].strip() == "caused by nonfinite:loss/train"
    assert "\x1b[" not in result.output  # no colour where the output is not a terminal


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
        "caused_by",
    }
    assert finding["severity"] == "error" and finding["run_id"] == "diverged"
    assert finding["caused_by"] == "nonfinite:loss/train"


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


def test_analyze_colours_severities_on_a_terminal(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(_store(tmp_path))], color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[31m\x1b[1mERROR" in result.output  # errors red and bold


def test_analyze_lists_the_most_severe_finding_of_a_run_first(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    result = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    badges = [line.split()[0] for line in result.output.splitlines() if line.startswith("    ")]
    ranks = {"ERROR": 0, "WARNING": 1, "INFO": 2}
    found = [ranks[b] for b in badges if b in ranks]
    assert found and found == sorted(found)


def _findings(root: Path, *args: str) -> set[str]:
    result = CliRunner().invoke(main, ["analyze", str(root), "--format", "json", *args])
    assert result.exit_code in (0, EXIT_FINDINGS), result.output
    return {f["rule"] for f in json.loads(result.output)["findings"]}


def test_set_overrides_a_threshold(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    assert "overfitting" in _findings(tmp_path)
    assert "overfitting" not in _findings(tmp_path, "--set", "overfitting.min_rise=5")
    # a string parameter: the rule now needs a metric the run does not have
    result = CliRunner().invoke(main, ["analyze", str(tmp_path), "--set", "overfitting.metric=nll"])
    assert "overfitting: needs at least 4 rows of scalars:nll/val" in result.output


def test_config_file_sets_thresholds_and_set_wins_over_it(tmp_path: Path) -> None:
    cases.overfitting(tmp_path / "runs").write()
    config = tmp_path / "thresholds.toml"
    config.write_text("[overfitting]\nmin_rise = 5\npatience = 3\n")
    assert "overfitting" not in _findings(tmp_path / "runs", "--config", str(config))
    flags = ["--config", str(config), "--set", "overfitting.min_rise=0.1"]
    assert "overfitting" in _findings(tmp_path / "runs", *flags)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "overfitting.patience"], "no '='"),
        (["--set", "overfitting.patience=five"], "'five' is not an integer like the default"),
        (["--set", "overfitting.patiense=5"], "did you mean 'patience'?"),
        (["--set", "overfitting.nope=5"], "its parameters: metric = 'loss'"),
        (["--set", "loss_not_decreasing.metric="], "empty"),
    ],
)
def test_bad_set_is_a_usage_error_naming_the_problem(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # checked before the store is opened: a usage error, even for a missing store
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "missing"), *args])
    assert result.exit_code == 2
    assert "Invalid value for '--set'" in result.output
    assert message in result.output


def test_unknown_rule_in_set_lists_every_rule(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(tmp_path), "--set", "overfit.patience=5"])
    assert result.exit_code == 2
    assert "no rule 'overfit'" in result.output
    flat = " ".join(result.output.split())  # click wraps long messages
    assert all(rule.id in flat for rule in load_rules())


def test_bad_config_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "thresholds.toml"
    for text, message in [
        ('[overfitting]\npatience = "5"\n', "[overfitting] patience: '5' is not an integer"),
        ("[overfiting]\npatience = 5\n", "no rule 'overfiting'"),
        ("[overfitting\n", "not valid TOML"),
    ]:
        config.write_text(text)
        result = CliRunner().invoke(main, ["analyze", str(tmp_path), "--config", str(config)])
        assert result.exit_code == 2, result.output
        flat = " ".join(result.output.split())
        assert "Invalid value for '--config'" in flat
        assert str(config) in flat and message in flat
    missing = CliRunner().invoke(main, ["analyze", str(tmp_path), "--config", "nope.toml"])
    assert missing.exit_code == 2 and "nope.toml" in missing.output


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.id)
def test_explain_prints_a_rule_without_a_store(rule: Rule) -> None:
    result = CliRunner().invoke(main, ["analyze", "--explain", rule.id])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"{rule.id}  ({rule.severity.value})  {rule.title}")
    assert rule.seed in out and rule.suggestion in out and "requires:" in out
    for name, default in rule.params.items():
        assert f"{name} = {default!r}" in out
    assert rule.sql.strip().splitlines()[-1].strip() in out
    assert f"-- rule: {rule.id}" in out  # the file, comments included


def test_explain_of_an_unknown_rule_lists_the_rules() -> None:
    result = CliRunner().invoke(main, ["analyze", "--explain", "nope"])
    assert result.exit_code == 2
    assert "Invalid value for '--explain'" in result.output and "no rule 'nope'" in result.output
    flat = " ".join(result.output.split())
    assert all(rule.id in flat for rule in load_rules())


def test_analyze_without_root_or_explain_still_needs_root() -> None:
    result = CliRunner().invoke(main, ["analyze"])
    assert result.exit_code == 2 and "Missing argument 'ROOT'" in result.output


def test_analyze_help_documents_the_threshold_options() -> None:
    result = CliRunner().invoke(main, ["analyze", "--help"])
    assert result.exit_code == 0
    for text in ("--set RULE.PARAM=VALUE", "--config FILE", "--explain RULE", "no ROOT needed"):
        assert text in result.output


def test_ctrl_c_in_any_verb_exits_130_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("telemetry.common.open_root", interrupted)  # every verb opens here
    for verb in ("analyze", "report", "runs", "query"):
        result = CliRunner().invoke(
            main, [verb, str(tmp_path), "SELECT 1"][: 3 if verb == "query" else 2]
        )
        assert result.exit_code == EXIT_INTERRUPTED, (verb, result.output)
        assert result.output == "\nError: interrupted (Ctrl-C)\n"


def test_library_warnings_are_printed_escaped(tmp_path: Path) -> None:
    _store(tmp_path)
    (tmp_path / "stray\x1b]0;owned\x07").write_text("not a run")
    result = CliRunner().invoke(main, ["runs", str(tmp_path)])  # only the warning names it
    assert result.exit_code == 0, result.output
    assert "stray\\x1b]0;owned\\x07" in result.output and "\x1b" not in result.output


def _rules_of(output: str) -> list[tuple[str, str]]:
    return [(f["rule"], f["run_id"]) for f in json.loads(output)["findings"]]


def test_analyze_caches_findings_in_the_store_and_reuses_them(tmp_path: Path) -> None:
    root = str(_store(tmp_path))
    runner = CliRunner()
    args = ["analyze", root, "--format", "json", "--fail-on", "never"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / ".cache" / "findings.parquet").is_file()
    assert runner.invoke(main, args).output == first.output
    assert runner.invoke(main, [*args, "--no-cache"]).output == first.output
    # divergence set to read a metric no run logs: the cached findings are not served
    assert ("divergence", "diverged") in _rules_of(first.output)
    other = runner.invoke(main, [*args, "--set", "divergence.metric=nll"])
    assert other.exit_code == 0, other.output
    assert ("divergence", "diverged") not in _rules_of(other.output)
    assert ("nonfinite", "diverged") in _rules_of(other.output)


def test_analyze_no_cache_writes_no_cache(tmp_path: Path) -> None:
    root = str(_store(tmp_path))
    result = CliRunner().invoke(main, ["analyze", root, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".cache").exists()


def test_report_shares_the_findings_cache_with_analyze(tmp_path: Path) -> None:
    root = str(_store(tmp_path))
    runner = CliRunner()
    plain = runner.invoke(main, ["report", root, "-o", str(tmp_path / "a.html"), "--no-cache"])
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / ".cache").exists()
    cached = runner.invoke(main, ["report", root, "-o", str(tmp_path / "b.html")])
    assert cached.exit_code == 0, cached.output
    assert (tmp_path / ".cache" / "findings.parquet").is_file()
    again = runner.invoke(main, ["report", root, "-o", str(tmp_path / "c.html")])
    assert again.exit_code == 0, again.output
    findings = [
        re.findall(
            r'<td class="mono">(?:<span[^>]*>↳ </span>)?(\w+)</td>', (tmp_path / n).read_text()
        )
        for n in ("a.html", "b.html", "c.html")
    ]
    assert findings[0] and findings[0] == findings[1] == findings[2]


def test_analyze_a_store_where_the_cache_cannot_be_written(tmp_path: Path) -> None:
    root = str(_store(tmp_path))
    (tmp_path / ".cache").write_text("a file where the cache directory belongs")
    runner = CliRunner()
    cached = runner.invoke(main, ["analyze", root, "--format", "json", "--fail-on", "never"])
    assert cached.exit_code == 0, cached.output
    plain = runner.invoke(
        main, ["analyze", root, "--format", "json", "--fail-on", "never", "--no-cache"]
    )
    assert cached.output == plain.output


def test_analyze_names_a_segment_damaged_after_its_run_was_cached(tmp_path: Path) -> None:
    """With the cache, runs are listed from the run index; a file damaged since the
    last analysis changes its run's key, so the run is read again and the file named."""
    rng = np.random.default_rng(0)
    for i in range(2):
        write_run(tmp_path, f"sweep-{i}", 60, 2, rng)
        record_writer(tmp_path / f"sweep-{i}", 0, 0)
    runner = CliRunner()
    args = ["analyze", str(tmp_path), "--fail-on", "never"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "unreadable" not in first.output
    segment = next((tmp_path / "sweep-0" / "tensors").glob("*.parquet"))
    segment.write_bytes(b"not parquet at all")
    damaged = runner.invoke(main, args)
    assert damaged.exit_code == 0, damaged.output
    assert "skipped 1 unreadable file(s)" in damaged.output
    assert segment.name in damaged.output
    assert damaged.output.count("sweep-0") >= 1 and "2 run(s)" in damaged.output
