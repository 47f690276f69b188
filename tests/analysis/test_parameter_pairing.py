"""The parameter rules pair a step's grad, weight and update rows only where a finding
can come of it (issue 19: no self-join of the tensors stream); these cases sit at the
edges of that shortcut, where pairing everything and pairing the candidates must agree."""

from __future__ import annotations

from pathlib import Path

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from tests.analysis.cases import param_stats, train_curve
from tests.builders import RunBuilder

RULES = {r.id: r for r in load_rules()}


def _findings(root: Path, rule_id: str, **params: object) -> list[Finding]:
    store = open_store(root)
    return diagnose(store, rules=[RULES[rule_id]], params={rule_id: params}).findings


def test_stalled_parameters_with_sustained_zero_judges_parameters_that_always_move(
    tmp_path: Path,
) -> None:
    # Only parameters with a zero update are paired by default; sustained = 0 makes
    # every parameter with enough samples stalled, moving or not.
    run = RunBuilder(tmp_path, "stalled")
    run.scalars("loss", "train", train_curve(40))
    param_stats(run, {"body.weight": 1e-3, "body.bias": 1e-3, "head.weight": 0.0}).finish().write()

    (default,) = _findings(tmp_path, "stalled_parameters")
    assert [p["param"] for p in default.evidence["stalled"]] == ["head.weight"]
    (every,) = _findings(tmp_path, "stalled_parameters", sustained=0.0)
    assert [p["param"] for p in every.evidence["stalled"]] == [
        "body.weight",
        "body.bias",
        "head.weight",
    ]
    assert every.subject == "body.weight"


def test_unused_parameters_pairs_a_gradient_only_with_the_weight_of_its_own_step(
    tmp_path: Path,
) -> None:
    # aux.weight has non-zero gradients on the first 20 steps and weight rows on the
    # last 20 only: on no step with a weight row did it get a gradient.
    run = RunBuilder(tmp_path, "unused")
    run.scalars("loss", "train", train_curve(40))
    param_stats(run, {"fc1.weight": 1e-3, "fc2.weight": 1e-3})
    run.tensors("aux.weight", "grad", [0.5] * 20, steps=list(range(1, 21)))
    run.tensors("aux.weight", "weight", [3.0] * 20, steps=list(range(21, 41)))
    run.finish().write()

    (finding,) = _findings(tmp_path, "unused_parameters")
    assert finding.subject == "aux.weight"
    assert finding.evidence["cause"] == "not_in_graph"
    assert finding.evidence["params_of_this_cause"] == [
        {"param": "aux.weight", "samples": 20, "zero_grad_rows": 0}
    ]
    assert finding.evidence["params"] == 3
    assert finding.evidence["params_with_gradients"] == 2
    assert finding.step == 21


def test_unused_parameters_counts_the_parameters_it_does_not_need_to_pair(
    tmp_path: Path,
) -> None:
    # fc1 and fc2 get non-zero gradients on every step with a weight: they are counted
    # (params, params_with_gradients) without being paired; only head.bias, whose
    # gradient is always 0, is judged step by step.
    run = RunBuilder(tmp_path, "blocked")
    run.scalars("loss", "train", train_curve(40))
    param_stats(run, {"fc1.weight": 1e-3, "fc2.weight": 1e-3})
    run.tensors("head.bias", "grad", [0.0] * 40)
    run.tensors("head.bias", "weight", [1.0] * 30, steps=list(range(11, 41)))
    run.finish().write()

    (finding,) = _findings(tmp_path, "unused_parameters")
    assert finding.evidence["cause"] == "zero_gradient"
    assert finding.evidence["params_of_this_cause"] == [
        {"param": "head.bias", "samples": 30, "zero_grad_rows": 30}
    ]
    assert finding.evidence["params"] == 3
    assert finding.evidence["params_with_gradients"] == 2
    assert finding.message.startswith("1 of 3 parameters get gradients that are all zeros")
