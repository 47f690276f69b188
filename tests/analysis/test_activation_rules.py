"""The activation rules (dead_relu, saturated_activations, poor_initialization) beyond
the contract test: which module they name, and what they deliberately leave alone."""

from __future__ import annotations

from pathlib import Path

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from tests.analysis.cases import SAMPLED, cnn_activations
from tests.builders import RunBuilder

RULES = {r.id: r for r in load_rules()}


def _findings(root: Path, rule_id: str, **params: object) -> list[Finding]:
    store = open_store(root)
    return diagnose(store, rules=[RULES[rule_id]], params={rule_id: params}).findings


def test_dead_relu_names_the_module_that_stays_dead_and_ignores_a_brief_one(
    tmp_path: Path,
) -> None:
    dying = [0.05, 0.3] + [0.9] * 8
    # dead for two samples mid-run, then again at the very last one only
    brief = [0.05, 0.05, 0.05, 0.9, 0.9, 0.05, 0.05, 0.05, 0.05, 0.9]
    run = RunBuilder(tmp_path, "r")
    cnn_activations(run, dead={"classifier.2": dying, "features.1": brief}).write()
    (finding,) = _findings(tmp_path, "dead_relu")
    assert finding.subject == "classifier.2"
    assert finding.step == 21
    assert finding.evidence["samples"] == 5 and finding.evidence["samples_above"] == 5
    assert finding.evidence["median_dead_frac"] == 0.9
    assert finding.evidence["dead_since_step"] == 21
    assert finding.evidence["reason"] == "nearly_all_dead"
    assert "nearly the whole layer" in finding.message


def test_dead_relu_leaves_a_layer_that_died_down_to_a_majority_during_training_alone(
    tmp_path: Path,
) -> None:
    # a one-cycle BatchNorm CNN at 90%+ accuracy: 10% dead at first, 55% from the LR peak on
    pruned = [0.09, 0.11, 0.4] + [0.55] * 7
    cnn_activations(RunBuilder(tmp_path, "r"), dead={"classifier.2": pruned}).write()
    assert _findings(tmp_path, "dead_relu") == []
    assert len(_findings(tmp_path, "dead_relu", nearly_all=0.5)) == 1


def test_dead_relu_flags_a_majority_dead_from_the_first_step(tmp_path: Path) -> None:
    # a -3 bias on 80 of 128 units: 62% never fire, from the initial weights on
    biased = [0.65, 0.64, 0.66] + [0.63] * 7
    cnn_activations(RunBuilder(tmp_path, "r"), dead={"classifier.2": biased}).write()
    (finding,) = _findings(tmp_path, "dead_relu")
    assert finding.step == 1
    assert finding.evidence["reason"] == "dead_from_start"
    assert finding.evidence["initial_dead_frac"] == 0.65
    assert "dead from the start" in finding.message


def test_dead_relu_needs_enough_sampled_steps(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    run.activations("fc", "Linear", [1, 11]).activations("relu", "ReLU", [1, 11], dead_frac=0.9)
    run.activations("head", "Linear", [1, 11]).write()
    assert _findings(tmp_path, "dead_relu") == []
    assert [f.subject for f in _findings(tmp_path, "dead_relu", min_samples=2)] == ["relu"]


def test_saturated_activations_leaves_the_output_module_alone_unless_asked(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "autoencoder")
    run.activations("enc", "Linear", SAMPLED).activations("dec", "Linear", SAMPLED)
    run.activations("out", "Sigmoid", SAMPLED, saturated_frac=0.8).write()
    assert _findings(tmp_path, "saturated_activations") == []
    (finding,) = _findings(tmp_path, "saturated_activations", skip_output=False)
    assert finding.subject == "out"


def _stack(run: RunBuilder, stds: list[float]) -> RunBuilder:
    for i, std in enumerate(stds):
        run.activations(f"net.{2 * i}", "Linear", SAMPLED[:3], std=std)
        run.activations(f"net.{2 * i + 1}", "ReLU", SAMPLED[:3], std=std / 2, dead_frac=0.0)
    return run


def test_poor_initialization_flags_std_growing_with_depth_but_not_one_odd_layer(
    tmp_path: Path,
) -> None:
    _stack(RunBuilder(tmp_path, "growing"), [0.5, 6.0, 40.0, 700.0]).write()
    _stack(RunBuilder(tmp_path, "small-head"), [1.0, 1.1, 0.9, 1e-4]).write()
    (finding,) = _findings(tmp_path, "poor_initialization")
    assert finding.run_id == "growing"
    assert finding.subject == "net.6"
    assert finding.evidence["last_to_first"] == 1400.0
    assert finding.evidence["std_factor_per_layer"] > 10


def test_poor_initialization_flags_a_loss_that_does_not_move(tmp_path: Path) -> None:
    stuck = [2.302585] * 10 + [2.3 - 0.04 * i for i in range(40)]
    RunBuilder(tmp_path, "stuck").scalars("loss", "train", stuck).write()
    warmup = RunBuilder(tmp_path, "warmup").scalars("loss", "train", stuck)
    warmup.scalars("lr", "train", [1e-3 * i / 20 for i in range(20)] + [1e-3] * 30).write()
    (finding,) = _findings(tmp_path, "poor_initialization")
    assert finding.run_id == "stuck"
    assert finding.subject == "loss/train"
    assert finding.step == 10
    assert finding.evidence["form"] == "flat_loss" and finding.evidence["points"] == 10
