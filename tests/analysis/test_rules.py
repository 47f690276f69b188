"""The rule contract: every shipped rule is well-formed, fires on its labelled run and
stays silent on a healthy one."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import Severity, diagnose, load_rules, open_store
from tests.analysis import cases
from tests.builders import RunBuilder

RULES = {r.id: r for r in load_rules()}


def test_every_rule_has_a_positive_case() -> None:
    assert sorted(RULES) == sorted(cases.POSITIVE)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_header_is_complete(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule.title and rule.seed and len(rule.suggestion) > 20
    assert rule.requires, "a rule must say what data it needs"


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_fires_on_its_labelled_run(rule_id: str, tmp_path: Path) -> None:
    run = cases.POSITIVE[rule_id](tmp_path).write()
    diagnosis = diagnose(open_store(tmp_path), rules=[RULES[rule_id]])
    found = [f for f in diagnosis.findings if f.run_id == run.run_id]
    assert len(found) == 1, diagnosis.not_evaluated
    finding = found[0]
    assert finding.rule == rule_id
    assert finding.severity == RULES[rule_id].severity
    assert finding.message and finding.suggestion == RULES[rule_id].suggestion
    assert finding.evidence, "a finding carries the numbers that triggered it"


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_is_silent_on_a_healthy_run(rule_id: str, tmp_path: Path) -> None:
    cases.NEGATIVE(tmp_path).write()
    diagnosis = diagnose(open_store(tmp_path), rules=[RULES[rule_id]])
    assert diagnosis.findings == []
    # early_stopping needs a val curve to stop on; export rules need a benchmark.
    assert (
        diagnosis.not_evaluated == []
        or rule_id == "early_stopping"
        or rule_id.startswith("export_")
    )


def test_healthy_run_gets_no_warning_or_error_from_all_rules(tmp_path: Path) -> None:
    cases.NEGATIVE(tmp_path).write()
    diagnosis = diagnose(open_store(tmp_path))
    assert [f for f in diagnosis.findings if f.severity != Severity.INFO] == []


def test_rule_without_its_data_is_reported_not_evaluated(tmp_path: Path) -> None:
    cases.loss_not_decreasing(tmp_path).write()  # train loss only: no val, no tensors
    diagnosis = diagnose(open_store(tmp_path))
    skipped = {n.rule: n.reason for n in diagnosis.not_evaluated}
    assert "loss/val" in skipped["overfitting"]
    assert "tensors:grad" in skipped["vanishing_gradients"]
    assert "exploding_gradients" in skipped
    assert skipped["dead_relu"] == (
        "needs at least 3 activations rows with dead_frac "
        "(ReLU outputs; none seen: the run recorded no activations)"
    )
    assert "saturated_activations" in skipped
    assert "poor_initialization" not in skipped  # its flat-loss form needs only the loss


def test_thresholds_can_be_overridden_per_rule(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    store = open_store(tmp_path)
    strict = diagnose(
        store, rules=[RULES["overfitting"]], params={"overfitting": {"min_rise": 5.0}}
    )
    assert strict.findings == []
    with pytest.raises(KeyError, match="no parameter"):
        diagnose(store, rules=[RULES["overfitting"]], params={"overfitting": {"nope": 1}})


def test_findings_name_the_first_nonfinite_tensor_before_the_loss(tmp_path: Path) -> None:
    cases.nonfinite(tmp_path).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["nonfinite"]]).findings
    assert finding.subject == "grad of fc.weight"
    assert finding.step == 3
    assert finding.evidence["first_scalar_step"] == 4


def test_vanishing_names_the_shallowest_layer(tmp_path: Path) -> None:
    cases.vanishing_gradients(tmp_path).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["vanishing_gradients"]]).findings
    assert finding.subject == "layer0.weight"
    assert finding.evidence["vanishing_params"] == 3


def test_diagnose_rejects_unknown_run_ids(tmp_path: Path) -> None:
    cases.healthy(tmp_path).write()
    with pytest.raises(KeyError, match="no run"):
        diagnose(open_store(tmp_path), run_ids=["missing"])


def test_requirements_follow_an_overridden_metric(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "mse-run").scalars("mse", "train", [1.0] * 30).finish().write()
    store = open_store(tmp_path)
    rule = [RULES["loss_not_decreasing"]]
    default = diagnose(store, rules=rule)
    assert [n.reason for n in default.not_evaluated] == [
        "needs at least 20 rows of scalars:loss/train or at least 20 rows of scalars:loss/val"
    ]
    custom = diagnose(store, rules=rule, params={"loss_not_decreasing": {"metric": "mse"}})
    assert custom.not_evaluated == []
    assert [f.subject for f in custom.findings] == ["mse/train"]


def test_nonfinite_checks_a_run_that_only_has_tensor_statistics(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "t").tensors("w", "grad", [1.0, 2.0], nonfinite=[0, 3]).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["nonfinite"]]).findings
    assert finding.subject == "grad of w" and finding.step == 2


_NEW_PAYLOAD = {"module_type": "Linear", "numel": 640, "sum": "NaN"}
_MIN_MAX_PAYLOAD = {"module_type": "Linear", "numel": 640, "min": "NaN", "max": "Infinity"}
_COUNT_PAYLOAD = {"module_type": "Linear", "numel": 640, "nonfinite": 12}


def _origin(
    run: RunBuilder, module: str, step: int, payload: dict[str, object] = _NEW_PAYLOAD
) -> RunBuilder:
    return run.event("nonfinite_origin", {"module": module, **payload}, step=step)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (_NEW_PAYLOAD, "holds NaN (or both +Inf and -Inf)"),
        ({**_NEW_PAYLOAD, "sum": "-Infinity"}, "holds -Inf"),
        (_MIN_MAX_PAYLOAD, "min NaN, max Infinity"),
        (_COUNT_PAYLOAD, "12 non-finite"),
    ],
)
def test_nonfinite_names_the_forward_origin_before_gradients_and_loss(
    tmp_path: Path, payload: dict[str, object], detail: str
) -> None:
    run = cases.nonfinite(tmp_path)  # grad of fc.weight at step 3, the loss at step 4
    _origin(run, "encoder.fc2", 3, payload).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["nonfinite"]]).findings
    assert finding.subject == "encoder.fc2" and finding.step == 3
    assert f"forward output of a Linear (640 elements): {detail}" in finding.message
    assert finding.evidence["origin_module"] == "encoder.fc2"
    assert finding.evidence["first_tensor_step"] == 3


def test_nonfinite_earliest_step_wins_over_a_later_forward_origin(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "t").tensors("w", "update", [1.0, 1.0], nonfinite=[0, 4])
    _origin(run, "fc", 3).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["nonfinite"]]).findings
    assert finding.subject == "update of w" and finding.step == 2
    assert finding.evidence["origin_module"] == "fc"
    assert finding.evidence["first_forward_step"] == 3


def test_nonfinite_names_a_sampled_activation_without_the_origin_event(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "a")  # activation statistics only: nan_check was off
    run.activations("fc1", "Linear", [1, 11, 21], nonfinite=[0, 0, 0])
    run.activations("fc2", "Linear", [1, 11, 21], nonfinite=[0, 0, 7])
    run.activations("fc3", "Linear", [1, 11, 21], nonfinite=[0, 3, 9]).write()
    (finding,) = diagnose(open_store(tmp_path), rules=[RULES["nonfinite"]]).findings
    assert finding.subject == "fc3" and finding.step == 11
    assert finding.evidence["origin_module_type"] == "Linear"
