"""Causes linked to consequences: a finding another finding of its run explains says so
(``caused_by``), and the CLI shows it under its cause."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from analysis import Finding, Severity
from analysis.causes import LINKS, link
from telemetry.cli import main
from tests.builders import RunBuilder


def _f(rule: str, *, run: str = "r", step: int | None = 10, **evidence: Any) -> Finding:
    subject = {"dead_relu": "fc1.relu", "unused_parameters": "fc0.weight"}.get(rule)
    return Finding(rule, Severity.WARNING, run, subject, step, f"{rule} msg", "fix", evidence)


def test_dead_units_explain_zero_gradients_upstream_but_not_gradients_that_never_came() -> None:
    dead = _f("dead_relu", step=30)
    blocked = _f("unused_parameters", cause="zero_gradient")
    detached = _f("unused_parameters", run="other", cause="not_in_graph")
    linked = link([dead, blocked, detached, _f("dead_relu", run="other")])
    assert [f.caused_by for f in linked] == [None, "dead_relu:fc1.relu", None, None]


def test_a_nan_explains_the_divergence_and_an_explosion_the_spike_it_came_before() -> None:
    linked = link(
        [
            _f("divergence", step=50),
            _f("nonfinite", step=60),  # the NaN explains divergence, whenever it was seen
            _f("loss_spike", step=20),
            _f("exploding_gradients", step=40),  # after the spike: cannot have made it
        ]
    )
    assert [f.caused_by for f in linked] == ["nonfinite", None, None, None]
    later = link([_f("loss_spike", step=45), _f("exploding_gradients", step=40)])
    assert later[0].caused_by == "exploding_gradients"


def test_links_are_only_made_within_a_run() -> None:
    linked = link([_f("divergence", run="a"), _f("nonfinite", run="b")])
    assert [f.caused_by for f in linked] == [None, None]


def test_the_declared_links_form_no_cycle_and_name_shipped_rules() -> None:
    from analysis import load_rules

    shipped = {rule.id for rule in load_rules()}
    edges: dict[str, set[str]] = {}
    for declared in LINKS:
        assert {declared.consequence, *declared.causes} <= shipped
        edges.setdefault(declared.consequence, set()).update(declared.causes)

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt}))
            for nxt in edges.get(start, ())
        )

    assert not [rule for rule in edges if reaches(rule, rule, set())]


def test_the_cli_shows_a_consequence_under_its_cause_and_json_names_it(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "broken")
    losses = [2.3 - 0.01 * i for i in range(40)] + [float("nan")] * 20
    run.scalars("loss", "train", losses).finish().write()
    text = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert text.exit_code == 0, text.output
    as_json = CliRunner().invoke(main, ["analyze", str(tmp_path), "--format", "json"])
    by_rule = {f["rule"]: f for f in json.loads(as_json.output)["findings"]}
    assert by_rule["nonfinite"]["caused_by"] is None
    assert by_rule["divergence"]["caused_by"] == "nonfinite:loss/train"
    lines = text.output.splitlines()
    at = next(i for i, line in enumerate(lines) if " divergence " in line)
    assert "-> " in lines[at]  # under its cause
    assert "caused by nonfinite:loss/train" in lines[at + 1]
    assert "fix:" not in lines[at + 1]  # the cause's fix is the one shown


def test_the_report_shows_a_consequence_right_under_its_cause(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path / "runs", "broken")
    run.scalars("loss", "train", [2.3 - 0.01 * i for i in range(40)] + [float("nan")] * 20)
    run.finish().write()
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    findings = page[page.index('<section id="findings">') :]
    cause, consequence = findings.index(">nonfinite<"), findings.index("divergence</td>")
    assert cause < consequence
    assert "↳ " in findings[cause : consequence + 20]
    assert "Caused by nonfinite:loss/train (above): fix that first." in findings


def test_the_cause_named_does_not_depend_on_the_order_findings_come_in() -> None:
    blocked = _f("unused_parameters", cause="zero_gradient")
    a = Finding("dead_relu", Severity.WARNING, "r", "a.relu", 5, "m", "fix")
    b = Finding("dead_relu", Severity.WARNING, "r", "b.relu", 5, "m", "fix")
    assert link([blocked, a, b])[0].caused_by == link([blocked, b, a])[0].caused_by
    assert link([blocked, b, a])[0].caused_by == "dead_relu:a.relu"
