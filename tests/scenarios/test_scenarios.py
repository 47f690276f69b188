"""The diagnostics on labelled real runs: every pathology caught, nothing else flagged.

Each scenario (``catalogue.py``) is a small model trained for a second or two with the
collector attached, healthy or broken on purpose, with its ground truth measured by the
test itself. ``conftest.suite`` trains them all once and diagnoses the store once.
"""

from __future__ import annotations

import pytest

from analysis import Finding, Severity
from tests.scenarios.catalogue import SCENARIOS, SPIKES, Scenario
from tests.scenarios.conftest import RULES, UNLABELLED, Suite, scores

pytestmark = pytest.mark.slow  # trains 23 models: ~40-60 s on a 2-core machine

HEALTHY = [s for s in SCENARIOS if s.rule is None]
BROKEN = [s for s in SCENARIOS if s.rule is not None]


def _ids(scenarios: list[Scenario]) -> list[str]:
    return [s.name for s in scenarios]


def test_the_catalogue_covers_every_rule_and_every_model_family() -> None:
    assert {s.rule for s in BROKEN} == set(RULES) - set(UNLABELLED)  # at least one run per rule
    for s in SCENARIOS:
        assert s.also <= set(RULES) - {s.rule}, s.name
    families = {s.family for s in HEALTHY}
    for part in ("MLP", "CNN", "BatchNorm", "Adam", "SGD"):
        assert any(part in f for f in families), part
    assert any("MLP" in f and "BatchNorm" not in f for f in families)
    assert any("CNN" in f and "BatchNorm" not in f for f in families)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_the_run_really_is_what_its_label_says(suite: Suite, scenario: Scenario) -> None:
    truth = suite.outcomes[scenario.name].truth
    assert truth.failed() == [], f"{scenario.name}: {truth.numbers}"


@pytest.mark.parametrize("scenario", BROKEN, ids=_ids(BROKEN))
def test_every_pathological_run_gets_its_rule(suite: Suite, scenario: Scenario) -> None:
    outcome = suite.outcomes[scenario.name]
    assert scenario.rule in outcome.fired, [(f.rule, f.message) for f in outcome.findings]


@pytest.mark.parametrize("scenario", HEALTHY, ids=_ids(HEALTHY))
def test_healthy_runs_get_no_warning_or_error(suite: Suite, scenario: Scenario) -> None:
    findings = suite.outcomes[scenario.name].findings
    assert [(f.rule, f.message) for f in findings if f.severity != Severity.INFO] == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_only_the_pathology_and_what_it_implies_fire(suite: Suite, scenario: Scenario) -> None:
    outcome = suite.outcomes[scenario.name]
    unexpected = [(f.rule, f.message) for f in outcome.findings if f.rule in outcome.unexpected]
    assert unexpected == []


def test_no_rule_has_a_false_positive_or_a_miss_on_the_suite(suite: Suite) -> None:
    # the table printed at the end of the session
    table = scores(list(suite.outcomes.values()))
    assert [(s.rule, s.false_pos) for s in table if s.false_pos] == []
    assert [(s.rule, s.recall) for s in table if s.rule not in UNLABELLED and s.recall != 1.0] == []


# What the findings say about the real runs, beyond firing.


def _finding(suite: Suite, scenario: str, rule: str) -> Finding:
    (finding,) = [f for f in suite.outcomes[scenario].findings if f.rule == rule]
    return finding


def test_nonfinite_names_the_input_at_the_step_of_the_nan_image(suite: Suite) -> None:
    finding = _finding(suite, "nan_in_data", "nonfinite")
    assert finding.subject == "(input)"  # image NAN_IMAGE's pixel, not a layer
    assert finding.step == suite.outcomes["nan_in_data"].truth.numbers["nan_batch_step"]


def test_loss_spike_lists_both_corrupt_batches(suite: Suite) -> None:
    finding = _finding(suite, "corrupt_batches", "loss_spike")
    assert [s["step"] for s in finding.evidence["spikes"]] == list(SPIKES)


def test_accuracy_plateau_blames_the_learning_rate_cut(suite: Suite) -> None:
    finding = _finding(suite, "decayed_too_early", "accuracy_plateau")
    assert "LR decayed too early" in finding.message


def test_stalled_and_unused_parameters_name_the_culprit(suite: Suite) -> None:
    assert _finding(suite, "head_not_in_optimizer", "stalled_parameters").subject == "5.weight"
    assert _finding(suite, "unused_branch", "unused_parameters").subject == "aux_head.weight"
