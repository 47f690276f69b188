"""Rules that read the run before they speak (issue 16): vanishing_gradients' advice
follows the activations the net has, underfitting leaves a run that blew up to the
rules about its learning rate, and dead_relu needs ReLU outputs to judge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from analysis.rule import RuleDefinitionError, parse_rule
from store.records import Rows
from store.schema import Stream
from telemetry.cli import main
from tests.analysis import cases
from tests.analysis.cases import SAMPLED, acc_curve, epochs_of, noisy, with_val
from tests.analysis.test_rule import GOOD
from tests.builders import RunBuilder, publish

RULES = {r.id: r for r in load_rules()}


def _findings(root: Path, rule_id: str) -> list[Finding]:
    return diagnose(open_store(root), rules=[RULES[rule_id]]).findings


def _modules(root: Path, run_id: str, types: dict[str, str]) -> None:
    """The model summary of ``run_id``: one row per module (name -> type)."""
    rows = Rows(
        Stream.MODULES,
        step=1,
        epoch=None,
        wall_time=0.0,
        columns={
            "module": list(types),
            "module_type": list(types.values()),
            "depth": [name.count(".") + 1 for name in types],
        },
    )
    publish(root, run_id, Stream.MODULES, [rows], segment=0, first_seq=100_000)


def _vanishing(root: Path, run_id: str) -> RunBuilder:
    """cases.vanishing_gradients' gradients (layer0 fades to 1e-11 of the head)."""
    run = RunBuilder(root, run_id)
    run.scalars("loss", "train", noisy([2.3] * 40, 0.01))
    for depth, scale in enumerate([1e-11, 1e-8, 1e-5, 1e-2, 0.5]):
        run.tensors(f"layer{depth}.weight", "grad", noisy([scale] * 40, 0.2, seed=depth))
    return run.finish().write()


def _mlp(activation: str) -> dict[str, str]:
    layers = {"": "MLP"}
    for i in range(5):
        layers[f"layer{i}"] = "Linear"
        if i < 4:
            layers[f"act{i}"] = activation
    return layers


# -- vanishing_gradients: advice that fits the net -------------------------------------------


def test_vanishing_gradients_does_not_suggest_relu_to_a_relu_net(tmp_path: Path) -> None:
    _vanishing(tmp_path, "relu")
    _modules(tmp_path, "relu", _mlp("ReLU"))
    _vanishing(tmp_path, "gelu")
    _modules(tmp_path, "gelu", _mlp("GELU"))
    _vanishing(tmp_path, "sigmoid")
    _modules(tmp_path, "sigmoid", _mlp("Sigmoid"))
    advice = {f.run_id: f.suggestion for f in _findings(tmp_path, "vanishing_gradients")}
    for run_id, kind in (("relu", "ReLU"), ("gelu", "GELU")):
        assert f"already uses ReLU-family activations ({kind})" in advice[run_id]
        assert "use ReLU" not in advice[run_id]
        assert "normalisation" in advice[run_id] and "residual" in advice[run_id]
    assert "Sigmoid" in advice["sigmoid"]
    assert "use ReLU or LeakyReLU instead" in advice["sigmoid"]
    assert advice["relu"] != advice["sigmoid"]


def test_vanishing_gradients_names_a_saturating_output_beside_relus(tmp_path: Path) -> None:
    _vanishing(tmp_path, "r")
    _modules(tmp_path, "r", {**_mlp("ReLU"), "out": "Sigmoid"})
    (finding,) = _findings(tmp_path, "vanishing_gradients")
    assert "already uses ReLU-family activations (ReLU)" in finding.suggestion
    assert "it also has Sigmoid, which saturate" in finding.suggestion
    assert finding.evidence["activation_types"] == ["ReLU", "Sigmoid"]


def test_vanishing_gradients_is_neutral_when_no_activation_module_was_seen(
    tmp_path: Path,
) -> None:
    # functional activations (F.relu, torch.sigmoid) leave no module behind
    _vanishing(tmp_path, "functional")
    _modules(tmp_path, "functional", {"": "MLP", **{f"layer{i}": "Linear" for i in range(5)}})
    (finding,) = _findings(tmp_path, "vanishing_gradients")
    assert finding.suggestion.startswith("No activation module was recorded")
    assert "already uses" not in finding.suggestion
    assert "with sigmoid/tanh between the layers, use ReLU or LeakyReLU" in finding.suggestion
    assert "with ReLU-family ones already" in finding.suggestion


def test_vanishing_gradients_counts_a_functional_relu_the_collector_found(
    tmp_path: Path,
) -> None:
    # a Linear whose output feeds F.relu records dead_frac (collector.activations)
    run = _vanishing(tmp_path, "f")
    run.activations("layer0", "Linear", SAMPLED, dead_frac=0.1).write()
    (finding,) = _findings(tmp_path, "vanishing_gradients")
    assert "already uses ReLU-family activations (a functional relu)" in finding.suggestion
    assert finding.evidence["functional_relu"] is True


def test_vanishing_gradients_without_any_module_record_keeps_the_header_advice(
    tmp_path: Path,
) -> None:
    _vanishing(tmp_path, "bare")
    (finding,) = _findings(tmp_path, "vanishing_gradients")
    assert finding.suggestion == RULES["vanishing_gradients"].suggestion
    assert "with ReLU-family activations already" in finding.suggestion  # neutral too


# -- underfitting: a run that blew up is not short of capacity -------------------------------


def _blown_up(root: Path, loss_head: list[float]) -> RunBuilder:
    """cases.underfitting's ending (training loss ~1.5, accuracy ~0.42, validation right
    behind) after ``loss_head``."""
    n = 100 - len(loss_head)
    loss = loss_head + [1.5 + 0.6 * math.exp(-i / 10) for i in range(n)]
    run = RunBuilder(root, "blown")
    run.scalars("loss", "train", noisy(loss))
    run.scalars("acc", "train", acc_curve(start=0.1, end=0.42), epochs=epochs_of(100))
    return with_val(run, [1.6 + 0.1 * math.exp(-(i + 1) / 3) for i in range(10)]).finish()


def _write(run: RunBuilder) -> Path:
    run.write()
    return run.root


def test_underfitting_is_silent_on_a_loss_that_blew_up_before_it_settled(
    tmp_path: Path,
) -> None:
    # an LR too high: 2.3 (the untrained model) to 80 within a few steps, then down to 1.5
    _blown_up(tmp_path, [2.3] * 5 + [30.0, 80.0, 60.0, 25.0, 9.0, 4.0]).write()
    assert _findings(tmp_path, "underfitting") == []


def test_underfitting_still_fires_after_one_bad_batch(tmp_path: Path) -> None:
    # one batch at 10x is a spike, not a blow-up: the smoothed loss never rose
    (finding,) = _findings(_write(_blown_up(tmp_path, [2.3] * 5 + [23.0, 2.2])), "underfitting")
    assert finding.evidence["peak_smoothed"] < 1.5 * 2.3


def test_underfitting_still_fires_on_its_labelled_run(tmp_path: Path) -> None:
    cases.underfitting(tmp_path).write()
    (finding,) = _findings(tmp_path, "underfitting")
    assert finding.evidence["peak_smoothed"] / finding.evidence["train_start"] < 1.1


# -- requirements on a column: dead_relu needs ReLU outputs ----------------------------------


def _tanh_net(root: Path) -> RunBuilder:
    """A tanh MLP's activations: every row's dead_frac is null (no ReLU to be dead)."""
    run = RunBuilder(root, "tanh").scalars("loss", "train", cases.train_curve())
    for i in range(3):
        run.activations(f"net.{2 * i}", "Linear", SAMPLED)
        run.activations(f"net.{2 * i + 1}", "Tanh", SAMPLED, saturated_frac=0.05)
    return run.finish()


def test_dead_relu_is_not_evaluated_on_a_net_without_relu_and_says_why(tmp_path: Path) -> None:
    _tanh_net(tmp_path).write()
    cases.dead_relu(tmp_path).write()  # a CNN with nn.ReLU modules: judged
    diagnosis = diagnose(open_store(tmp_path), rules=[RULES["dead_relu"]])
    assert [(n.run_id, n.reason) for n in diagnosis.not_evaluated] == [
        (
            "tanh",
            "needs at least 3 activations rows with dead_frac (ReLU outputs; none seen: no "
            "nn.ReLU module and no functional relu found in its 60 activations rows)",
        )
    ]
    assert [f.run_id for f in diagnosis.findings] == ["dead"]


def test_the_cli_lists_dead_relu_as_not_evaluated_in_text_and_json(tmp_path: Path) -> None:
    _tanh_net(tmp_path).write()
    text = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert text.exit_code == 0, text.output
    assert "tanh: dead_relu: needs at least 3 activations rows with dead_frac (ReLU" in text.output
    as_json = CliRunner().invoke(main, ["analyze", str(tmp_path), "--format", "json"])
    skipped = {n["rule"]: n["reason"] for n in json.loads(as_json.output)["not_evaluated"]}
    assert "no nn.ReLU module and no functional relu found" in skipped["dead_relu"]


def test_a_column_count_follows_its_parameter(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")  # two sampled steps of one ReLU
    run.activations("fc", "Linear", [1, 11]).activations("relu", "ReLU", [1, 11], dead_frac=0.9)
    run.write()
    store = open_store(tmp_path)
    (skipped,) = diagnose(store, rules=[RULES["dead_relu"]]).not_evaluated
    assert "(ReLU outputs; only 2 seen)" in skipped.reason
    params = {"dead_relu": {"min_samples": 2}}
    lowered = diagnose(store, rules=[RULES["dead_relu"]], params=params)
    assert lowered.not_evaluated == [] and [f.subject for f in lowered.findings] == ["relu"]


def test_a_requirement_names_a_column_of_the_view() -> None:
    text = GOOD.replace("tensors:grad | system", "activations:dead_frac>=$limit | system")
    with pytest.raises(RuleDefinitionError, match="needs an int parameter, not 0.5"):
        parse_rule(text, filename="rules/demo_rule.sql")
    text = GOOD.replace("tensors:grad", "activations:dead_frac>=3")
    rule = parse_rule(text, filename="rules/demo_rule.sql")
    (column, _) = rule.requires[1]
    assert column.column == "dead_frac" and column.min_rows == 3
    assert column.describe() == "at least 3 activations rows with dead_frac (ReLU outputs)"
    assert column.describe((0, 0)) == (
        "at least 3 activations rows with dead_frac (ReLU outputs; none seen: the run "
        "recorded no activations)"
    )
    for bad in ("activations:nope", "activations:$metric", "activations:dead_frac;drop"):
        with pytest.raises(RuleDefinitionError, match="cannot require"):
            parse_rule(GOOD.replace("tensors:grad", bad), filename="rules/demo_rule.sql")
