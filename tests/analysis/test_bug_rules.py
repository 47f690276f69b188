"""The rules that name the bug (issue 16) on synthetic stores: missing_eval_mode,
missing_zero_grad, chance_level, lr_too_high, and loss_spike's batch weighting. Each
rule fires on its pathology with the numbers that show it and stays silent on the
healthy twin."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis import diagnose, load_rules, open_store
from analysis.engine import Diagnosis
from analysis.findings import Finding, Severity
from store.records import Rows
from store.schema import Stream
from tests.analysis.cases import noisy
from tests.builders import RunBuilder, publish

RULES = {r.id: r for r in load_rules()}


def _diagnose(root: Path, rule_id: str) -> Diagnosis:
    return diagnose(open_store(root), rules=[RULES[rule_id]])


def _findings(root: Path, rule_id: str) -> list[Finding]:
    return _diagnose(root, rule_id).findings


def _by_run(root: Path, rule_id: str) -> dict[str, Finding]:
    found = _findings(root, rule_id)
    assert len({f.run_id for f in found}) == len(found), "one finding per run"
    return {f.run_id: f for f in found}


def _system(root: Path, run_id: str, steps: Sequence[int], **columns: Any) -> None:
    """One ``system`` row per step; a column is one value for all steps or one per step."""
    batches = []
    for i, step in enumerate(steps):
        row = {k: [v[i] if isinstance(v, list) else v] for k, v in columns.items()}
        batches.append(
            Rows(Stream.SYSTEM, step=step, epoch=None, wall_time=1e9 + step, columns=row)
        )
    publish(root, run_id, Stream.SYSTEM, batches, segment=0, first_seq=200_000)


def _model(root: Path, run_id: str, output_shape: str) -> None:
    """The model's own ``modules`` row (module ''), with its output shape as JSON text."""
    rows = Rows(
        Stream.MODULES,
        step=1,
        epoch=None,
        wall_time=1e9,
        columns={
            "module": ["", "fc"],
            "module_type": ["Net", "Linear"],
            "depth": [0, 1],
            "output_shape": [output_shape, output_shape],
        },
    )
    publish(root, run_id, Stream.MODULES, [rows], segment=0, first_seq=100_000)


# -- missing_eval_mode -----------------------------------------------------------------------

_SEEN = {
    "modules": ["features.drop", "features.bn"],
    "module_types": ["Dropout", "BatchNorm1d"],
    "count": 2,
    "of": 2,
}


def _eval_run(root: Path, run_id: str, *, seen: bool, ended: tuple[int, int] | None) -> None:
    """Validation after every 10th of 100 steps; ``ended`` = (training_mode_steps, steps)
    of the run's end event, None for a run still going."""
    run = RunBuilder(root, run_id).scalars("loss", "train", noisy([1.0] * 100))
    if seen:
        run.event("eval_in_training_mode", _SEEN, step=10)
    if ended is not None:
        training, steps = ended
        forwards = {"steps": steps, "training_mode_steps": training}
        run.event("run_finished", {"steps": 100, "inference_forwards": forwards}, step=100)
    run.write()


def test_missing_eval_mode_fires_when_every_validation_ran_in_training_mode(
    tmp_path: Path,
) -> None:
    _eval_run(tmp_path, "forgot", seen=True, ended=(10, 10))
    (f,) = _findings(tmp_path, "missing_eval_mode")
    assert (f.run_id, f.subject, f.step) == ("forgot", "model.training", 10)
    assert f.severity is Severity.WARNING
    assert "Dropout, BatchNorm1d" in f.message
    assert "features.drop, features.bn" in f.message
    assert "after 10 of the 10 steps" in f.message
    assert f.evidence["inference_steps"] == 10 and f.evidence["training_mode_steps"] == 10
    assert f.evidence["module_types"] == ["Dropout", "BatchNorm1d"]
    assert f.evidence["modules_in_training_mode"] == 2


def test_missing_eval_mode_leaves_a_one_off_recalibration_alone(tmp_path: Path) -> None:
    # BatchNorm statistics recalibrated in training mode once, every other validation in eval
    _eval_run(tmp_path, "recalibrated", seen=True, ended=(1, 10))
    assert _findings(tmp_path, "missing_eval_mode") == []


def test_missing_eval_mode_judges_a_live_run_on_the_event_alone(tmp_path: Path) -> None:
    _eval_run(tmp_path, "live", seen=True, ended=None)
    (f,) = _findings(tmp_path, "missing_eval_mode")
    assert (f.run_id, f.step) == ("live", 10)
    assert "Dropout, BatchNorm1d" in f.message
    assert "steps that ran such forwards" not in f.message
    assert f.evidence["inference_steps"] is None


def test_missing_eval_mode_is_silent_without_the_event(tmp_path: Path) -> None:
    _eval_run(tmp_path, "eval_mode", seen=False, ended=(0, 10))
    _eval_run(tmp_path, "no_validation", seen=False, ended=None)
    assert _findings(tmp_path, "missing_eval_mode") == []


# -- missing_zero_grad -----------------------------------------------------------------------


def _grad_run(root: Path, run_id: str, n: int = 20, **columns: Any) -> None:
    RunBuilder(root, run_id).scalars("loss", "train", noisy([1.0] * n)).finish().write()
    _system(root, run_id, range(1, n + 1), **columns)


def test_missing_zero_grad_fires_when_every_step_carries_gradients_in(tmp_path: Path) -> None:
    norms = [float(i) for i in range(1, 21)]  # the sum of all gradients so far
    carried = [None] + norms[:-1]  # what the previous steps left in .grad
    _grad_run(tmp_path, "forgot", grad_norm=norms, grad_carried_norm=carried, backwards=1)
    (f,) = _findings(tmp_path, "missing_zero_grad")
    assert (f.run_id, f.subject, f.step) == ("forgot", "optimizer.zero_grad", 2)
    assert f.severity is Severity.ERROR
    assert f.evidence["carried_steps"] == 19 and f.evidence["judged_steps"] == 19
    assert f.evidence["max_grad_norm"] == 20.0
    assert "19 of 19 steps" in f.message and "from step 2" in f.message
    # the first norm is the median of the first 5 steps: 3
    assert "grew from 3 to 20" in f.message
    assert "91% of its gradient norm" in f.message  # median of (i - 1) / i over steps 2-20


def test_missing_zero_grad_is_silent_when_the_loop_resets(tmp_path: Path) -> None:
    norms = noisy([1.0] * 20, 0.3)
    _grad_run(tmp_path, "none", grad_norm=norms, grad_carried_norm=None, backwards=1)
    _grad_run(tmp_path, "zeros", grad_norm=norms, grad_carried_norm=0.0, backwards=1)
    # accumulation: 4 micro-batches per step add up inside it, reset after it
    _grad_run(
        tmp_path, "accumulate", grad_norm=norms, grad_carried_norm=None, backwards=4, batch_size=256
    )
    diagnosis = _diagnose(tmp_path, "missing_zero_grad")
    assert diagnosis.findings == []
    assert [n for n in diagnosis.not_evaluated if n.rule == "missing_zero_grad"] == []


def test_missing_zero_grad_needs_min_steps_carried(tmp_path: Path) -> None:
    # 5 steps: 4 judged after the first, under min_steps = 5; 6 steps reach it
    _grad_run(tmp_path, "short", n=5, grad_norm=1.0, grad_carried_norm=[None, 1.0, 2.0, 3.0, 4.0])
    _grad_run(tmp_path, "enough", n=6, grad_norm=1.0, grad_carried_norm=[None] + [1.0] * 5)
    diagnosis = _diagnose(tmp_path, "missing_zero_grad")
    assert [n.run_id for n in diagnosis.not_evaluated] == []
    assert [(f.run_id, f.evidence["carried_steps"]) for f in diagnosis.findings] == [("enough", 5)]


# -- chance_level ----------------------------------------------------------------------------

_VAL_STEPS = [10 * (i + 1) for i in range(10)]


def _classifier(
    root: Path, run_id: str, output_shape: str, val: list[float], acc: list[float] | None = None
) -> None:
    run = RunBuilder(root, run_id).scalars("loss", "train", noisy([val[0]] * 100, 0.01))
    run.scalars("loss", "val", val, steps=_VAL_STEPS, epochs=list(range(10)))
    if acc is not None:
        run.scalars("acc", "val", acc, steps=_VAL_STEPS, epochs=list(range(10)))
    run.finish().write()
    _model(root, run_id, output_shape)


def test_chance_level_fires_on_a_classifier_that_predicts_the_prior(tmp_path: Path) -> None:
    _classifier(tmp_path, "chance", "[64, 10]", noisy([2.30] * 10, 0.005), noisy([0.1] * 10, 0.1))
    (f,) = _findings(tmp_path, "chance_level")
    assert (f.run_id, f.subject, f.step) == ("chance", "loss/val", 10)
    assert f.severity is Severity.ERROR
    assert "ln(10)" in f.message and "10 output classes" in f.message
    assert "against 10.0% for a random guess" in f.message
    assert f.evidence["classes"] == 10 and f.evidence["split"] == "val"
    assert math.isclose(f.evidence["chance_loss"], math.log(10))
    assert abs(f.evidence["late_loss"] - 2.30) < 0.02
    assert f.evidence["best_acc"] <= 0.11


def test_chance_level_is_silent_on_a_curve_that_leaves_ln_c(tmp_path: Path) -> None:
    val = [2.3 - 2.0 * i / 9 for i in range(10)]  # 2.3 -> 0.3
    _classifier(tmp_path, "learns", "[64, 10]", val, [0.1 + 0.08 * i for i in range(10)])
    assert _findings(tmp_path, "chance_level") == []


def test_chance_level_does_not_judge_a_single_output(tmp_path: Path) -> None:
    # ln(1) = 0: a regression at loss 0 would otherwise sit exactly "at chance"
    _classifier(tmp_path, "regression", "[64, 1]", [0.0] * 10)
    assert _findings(tmp_path, "chance_level") == []


def test_chance_level_reads_the_classes_of_a_language_model(tmp_path: Path) -> None:
    # [batch, T, vocab]: no validation, so the training loss is judged
    run = RunBuilder(tmp_path, "lm").scalars("loss", "train", noisy([math.log(65)] * 100, 0.01))
    run.finish().write()
    _model(tmp_path, "lm", "[32, 16, 65]")
    (f,) = _findings(tmp_path, "chance_level")
    assert (f.subject, f.evidence["classes"], f.evidence["split"]) == ("loss/train", 65, "train")
    assert "ln(65) = 4.174" in f.message


def test_chance_level_is_silent_when_accuracy_beats_chance(tmp_path: Path) -> None:
    # loss still near ln(10), but 50% accuracy against 10% for a guess: it learned something
    _classifier(tmp_path, "skewed", "[64, 10]", noisy([2.25] * 10, 0.005), noisy([0.5] * 10, 0.05))
    assert _findings(tmp_path, "chance_level") == []


# -- lr_too_high -----------------------------------------------------------------------------


def _lr_run(root: Path, run_id: str, loss: list[float], *, clipped: bool) -> None:
    n = len(loss)
    run = RunBuilder(root, run_id).scalars("loss", "train", loss)
    run.scalars("lr", "train", [0.1] * n).finish().write()
    if clipped:
        _system(
            root, run_id, range(1, n + 1), grad_norm=60.0, grad_norm_step=1.0, clip_ratio=1 / 60
        )
    else:
        norms = noisy([1.0] * n, 0.2)
        _system(root, run_id, range(1, n + 1), grad_norm=norms, grad_norm_step=norms)


def test_lr_too_high_fires_on_an_early_blow_up_and_names_the_rate(tmp_path: Path) -> None:
    loss = [2.3, 30.0, 25.0, 8.0, *noisy([2.3] * 56, 0.01)]
    _lr_run(tmp_path, "blown", loss, clipped=True)
    (f,) = _findings(tmp_path, "lr_too_high")
    assert (f.run_id, f.subject) == ("blown", "loss/train")
    assert f.step in (2, 3)  # the smoothed peak (25) sits on both
    assert f.severity is Severity.ERROR
    assert "learning rate 0.1" in f.message
    assert "before clipping reached 60" in f.message and "clipped to 1 on 60 of 60" in f.message
    ev = f.evidence
    assert (ev["first_loss"], ev["peak"], ev["lr"]) == (2.3, 25.0, 0.1)
    assert ev["rise"] > 10
    assert (ev["max_grad_norm_before_clipping"], ev["clipped_to"]) == (60.0, 1.0)
    assert ev["clipped_steps"] == 60
    # the rule's own suggestion column (analysis/engine.py honours it when not null)
    assert "from 0.1 to 0.01-0.033" in f.suggestion
    assert f.suggestion != RULES["lr_too_high"].suggestion


def test_lr_too_high_is_silent_on_a_falling_loss_with_one_blip(tmp_path: Path) -> None:
    loss = noisy([2.3 - 2.0 * i / 99 for i in range(100)], 0.02)
    loss[29] *= 3  # one bad batch at step 30
    _lr_run(tmp_path, "blip", loss, clipped=False)
    assert _findings(tmp_path, "lr_too_high") == []


def test_lr_too_high_leaves_a_loss_that_climbs_to_the_end(tmp_path: Path) -> None:
    # gradient ascent: the peak is the last step, divergence's to report
    loss = noisy([2.3 + 30.0 * i / 59 for i in range(60)], 0.01)
    _lr_run(tmp_path, "ascent", loss, clipped=False)
    assert _findings(tmp_path, "lr_too_high") == []


# -- loss_spike: the last batch of an epoch ------------------------------------------------

_N, _EPOCH = 200, 20
_ENDS = list(range(_EPOCH, _N + 1, _EPOCH))  # steps 20, 40, ..., 200


def _epoch_end_jumps(root: Path, run_id: str, *, epochs: bool = True) -> None:
    """Flat noisy loss ~0.5 that jumps 10x at the last step of each 20-step epoch."""
    loss = noisy([0.5] * _N, 0.2, seed=4)
    for step in _ENDS:
        loss[step - 1] = 5.0
    epoch_of = [(s - 1) // _EPOCH for s in range(1, _N + 1)] if epochs else None
    RunBuilder(root, run_id).scalars("loss", "train", loss, epochs=epoch_of).finish().write()


def test_loss_spike_weighs_a_last_batch_of_one_row_down(tmp_path: Path) -> None:
    # without epochs, only the weighting can excuse the jumps (see the last test)
    sizes = [1 if s in _ENDS else 64 for s in range(1, _N + 1)]
    for run_id, epochs in (("small_last", True), ("small_last_no_epochs", False)):
        _epoch_end_jumps(tmp_path, run_id, epochs=epochs)
        _system(tmp_path, run_id, range(1, _N + 1), batch_size=sizes)
    assert _findings(tmp_path, "loss_spike") == []


def test_loss_spike_fires_on_the_same_jumps_in_full_batches(tmp_path: Path) -> None:
    _epoch_end_jumps(tmp_path, "full_last")
    _system(tmp_path, "full_last", range(1, _N + 1), batch_size=64)
    (f,) = _findings(tmp_path, "loss_spike")
    assert (f.run_id, f.subject, f.step) == ("full_last", "loss/train", 20)
    # every jump but the last, which has no step after it to come back on
    assert [s["step"] for s in f.evidence["spikes"]] == _ENDS[:-1]
    assert f.evidence["unrecovered_jumps"] == 1
    assert f.evidence["epoch_end_blips"] == 0
    assert all(8 < s["ratio"] < 13 for s in f.evidence["spikes"])
    assert "spiked 9 time(s)" in f.message


def test_loss_spike_skips_epoch_ends_when_batch_sizes_are_unknown(tmp_path: Path) -> None:
    # an imported run: no system rows, so the one-point jump at an epoch's end is excused
    _epoch_end_jumps(tmp_path, "imported")
    assert _findings(tmp_path, "loss_spike") == []
    # without epochs it cannot be: the same jumps fire
    _epoch_end_jumps(tmp_path, "no_epochs", epochs=False)
    (f,) = _findings(tmp_path, "loss_spike")
    assert f.run_id == "no_epochs"
    assert f.evidence["epoch_end_blips"] == 0 and f.evidence["count"] == 9


# -- dead_relu behind a functional ReLU -------------------------------------------------


def test_dead_units_behind_a_functional_relu_name_it(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "functional")
    run.scalars("loss", "train", noisy([1.0] * 40, 0.05))
    columns = {"module": ["fc1"], "module_type": ["Linear"], "feeds": ["relu"]}
    run._add(Stream.MODULES, 1, None, columns)
    run.activations("fc1", "Linear", list(range(1, 41, 4)), dead_frac=0.85)
    run.finish().write()
    (f,) = _findings(tmp_path, "dead_relu")
    assert f.subject == "fc1" and "fc1 (Linear, read by a functional ReLU)" in f.message
    assert f.evidence["functional_relu"] is True
