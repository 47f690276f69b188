"""The convergence rules (loss_not_decreasing, underfitting, accuracy_plateau, overfitting,
early_stopping, divergence) on the classes of false alarm and miss that issue 15 names:
each rule compares against the right reference (the untrained model, chance level, a
smoothed best) and reads the validation metric with the loss."""

from __future__ import annotations

import math
from pathlib import Path

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from tests.analysis import cases
from tests.analysis.cases import acc_curve, epochs_of, noisy, with_val
from tests.builders import RunBuilder

RULES = {r.id: r for r in load_rules()}


def _findings(root: Path, rule_id: str, **params: object) -> list[Finding]:
    store = open_store(root)
    return diagnose(store, rules=[RULES[rule_id]], params={rule_id: params}).findings


def _decay(n: int, start: float, end: float, rate: float = 4.0) -> list[float]:
    return [end + (start - end) * math.exp(-rate * i / n) for i in range(n)]


def _evals(values: list[float], every: int = 10) -> list[int]:
    return [every * (i + 1) for i in range(len(values))]


# loss_not_decreasing


def test_a_loss_that_blew_up_and_came_back_to_chance_did_not_decrease(tmp_path: Path) -> None:
    # 2.3 -> 40 in five steps, then down to ln(10) and no further: against the blow-up the
    # last window looks like progress, but the accuracy never left chance
    loss = [2.3, 9.0, 25.0, 40.0, 30.0] + _decay(95, 20.0, 2.3, rate=20)
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(loss, 0.02))
    run.scalars("acc", "train", noisy([0.1] * 100, 0.3, seed=2)).write()
    (finding,) = _findings(tmp_path, "loss_not_decreasing")
    assert finding.evidence["acc_at_chance"] is True
    assert finding.evidence["not_below_start"] is False
    assert "stayed at chance level" in finding.message
    assert _findings(tmp_path, "loss_not_decreasing", chance_ceiling=0.05) == []


def test_a_loss_that_learned_and_came_back_above_its_start_did_not_decrease(
    tmp_path: Path,
) -> None:
    # zero_grad forgotten: 2.5 -> 1.6, then the accumulated gradients throw it back up
    loss = _decay(30, 2.5, 1.6) + [2.7] * 70
    RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(loss, 0.03)).write()
    (finding,) = _findings(tmp_path, "loss_not_decreasing")
    assert finding.evidence["not_below_start"] is True
    assert "less than 5% below where it started" in finding.message


def test_a_loss_that_converged_within_warm_up_decreased(tmp_path: Path) -> None:
    # a linear model on a nonlinear target: 1.3 -> 0.8 in ten steps, then flat; the
    # post-warm-up windows are flat, but 38% of the start is gone: underfitting's call
    loss = _decay(10, 1.3, 0.82, rate=3) + [0.82] * 110
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(loss, 0.08))
    with_val(run, [0.83] * 12).write()
    assert _findings(tmp_path, "loss_not_decreasing") == []
    (finding,) = _findings(tmp_path, "underfitting")
    assert finding.evidence["judged_by"] == "loss" and finding.evidence["loss_high"] is True


def test_a_run_that_learned_and_then_rose_a_little_decreased(tmp_path: Path) -> None:
    # 0.74 -> 0.15, then an LR spike leaves the last window above the first after warm-up
    loss = _decay(80, 0.74, 0.15, rate=12) + [0.3] * 20
    RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(loss, 0.03)).write()
    assert _findings(tmp_path, "loss_not_decreasing") == []


def test_loss_not_decreasing_reads_an_evaluation_only_log(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").scalars("loss", "val", noisy([2.3] * 30, 0.01)).write()
    (finding,) = _findings(tmp_path, "loss_not_decreasing")
    assert finding.subject == "loss/val" and finding.evidence["series"] == "val"


# underfitting


def test_underfitting_measures_the_fall_from_the_untrained_model(tmp_path: Path) -> None:
    # a linear regression at a noisy target's floor: 1.35 -> 0.5 (R^2 ~0.5 is the best the
    # data allows); from its tenth-of-the-run window (~1.0) it would look half left
    loss = _decay(200, 1.35, 0.5, rate=10)
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(loss, 0.2))
    with_val(run, [0.47] * 10, every=20).write()
    assert _findings(tmp_path, "underfitting") == []
    (finding,) = _findings(tmp_path, "underfitting", high_frac=0.3)
    assert finding.evidence["train_start"] > 1.2  # the untrained model, not a window


def test_underfitting_is_judged_by_accuracy_over_a_high_loss_floor(tmp_path: Path) -> None:
    # label smoothing (or a detection loss): 2.3 -> 1.4 keeps 60% of the start, but the
    # model is right 99% of the time on training and validation
    run = RunBuilder(tmp_path, "r")
    run.scalars("loss", "train", noisy(_decay(100, 2.3, 1.4), 0.02))
    run.scalars("acc", "train", acc_curve(start=0.1, end=0.99), epochs=epochs_of(100))
    run.scalars("acc", "val", [0.99] * 10, steps=_evals([0] * 10))
    with_val(run, [1.42] * 10).write()
    assert _findings(tmp_path, "underfitting") == []


# accuracy_plateau


def _flat_accuracy(root: Path, val_loss: list[float], *, lr: list[float] | None = None) -> None:
    """Validation accuracy at 0.9667 (29 of 30) for 20 evaluations after climbing for
    five; training accuracy ~0.97: a small model on a small validation set."""
    run = RunBuilder(root, "r")
    val = [0.83, 0.87, 0.9, 0.93, 0.9667] + [0.9667] * 20
    run.scalars("acc", "val", val, steps=_evals(val))
    run.scalars("loss", "val", val_loss, steps=_evals(val_loss))
    run.scalars("acc", "train", noisy([0.97] * 250, 0.005, seed=6), epochs=epochs_of(250))
    if lr is not None:
        run.scalars("lr", "train", lr)
    run.write()


def test_accuracy_plateau_is_silent_while_the_loss_still_falls(tmp_path: Path) -> None:
    _flat_accuracy(tmp_path, _decay(25, 0.4, 0.1, rate=2))  # -40% across the plateau
    assert _findings(tmp_path, "accuracy_plateau") == []


def test_accuracy_plateau_fires_when_the_loss_stopped_too(tmp_path: Path) -> None:
    _flat_accuracy(tmp_path, _decay(5, 0.4, 0.2) + noisy([0.2] * 20, 0.002))
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert finding.evidence["loss_series"] == "val"
    assert abs(finding.evidence["loss_change"]) < 0.05


def test_a_warm_up_shaped_learning_rate_is_not_a_decay(tmp_path: Path) -> None:
    # a bias group's warm-up: 10x the base rate at step 1, falling step by step to it by
    # step 50, where the plateau begins; no rate was held and then cut
    lr = [0.1 * max(0.1, 1 - s / 50) for s in range(1, 251)]
    _flat_accuracy(tmp_path, _decay(5, 0.4, 0.2) + noisy([0.2] * 20, 0.002), lr=lr)
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert "LR decayed" not in finding.message
    assert finding.evidence["lr_held_before_drop"] is False
    assert finding.evidence["lr_decayed_early"] is False


def test_one_lucky_evaluation_does_not_start_the_plateau(tmp_path: Path) -> None:
    # 0.92 once at step 40, then 0.88 and a slow climb: the best is the smoothed 0.88
    run = RunBuilder(tmp_path, "r")
    val = [0.5, 0.64, 0.77, 0.92, 0.88, 0.88] + [0.8833] * 10 + [0.8861] * 6
    run.scalars("acc", "val", val, steps=_evals(val)).write()
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert finding.evidence["level"] < 0.9 and finding.step > 40


# overfitting


def _overfit_run(root: Path, val: list[float], *, val_acc: list[float] | None = None) -> None:
    run = RunBuilder(root, "r")
    run.scalars("loss", "train", noisy(_decay(10 * len(val), 2.0, 0.01), 0.05))
    with_val(run, val)
    if val_acc is not None:
        run.scalars("acc", "val", val_acc, steps=_evals(val_acc))
    run.write()


def test_overfitting_compares_against_a_smoothed_best(tmp_path: Path) -> None:
    # one evaluation at 0.4 in a curve that settles at 0.5: the single low point is noise
    val = _decay(10, 1.5, 0.5, rate=5) + [0.5, 0.4, 0.5] + noisy([0.51] * 12, 0.01)
    _overfit_run(tmp_path, val)
    assert _findings(tmp_path, "overfitting") == []


def test_overfitting_finds_a_mild_sustained_rise(tmp_path: Path) -> None:
    # +7% over 140 evaluations, far above the curve's own jitter
    val = _decay(20, 1.5, 0.5, rate=5) + [0.5 * (1 + 0.07 * i / 140) for i in range(1, 141)]
    _overfit_run(tmp_path, noisy(val, 0.002, seed=3))
    (finding,) = _findings(tmp_path, "overfitting")
    assert 0.05 < finding.evidence["rise"] < 0.08
    assert finding.evidence["rise_sigmas"] > 3


def test_overfitting_does_not_take_a_steady_rise_for_noise(tmp_path: Path) -> None:
    # ten per-epoch evaluations climbing 0.1 a step: first differences would call the
    # climb itself the noise (sigma ~0.1, the rise < 3 of them); second differences do not
    _overfit_run(tmp_path, [2.0, 1.5, 1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05, 1.15])
    (finding,) = _findings(tmp_path, "overfitting")
    assert finding.evidence["rise_sigmas"] > 3


def test_overfitting_is_silent_while_validation_accuracy_climbs(tmp_path: Path) -> None:
    val = _decay(20, 1.5, 0.5, rate=5) + [0.5 * (1 + 0.2 * i / 40) for i in range(1, 41)]
    acc = [0.3 + 0.3 * i / 20 for i in range(20)] + [0.6 + 0.2 * i / 40 for i in range(1, 41)]
    _overfit_run(tmp_path, val, val_acc=acc)
    assert _findings(tmp_path, "overfitting") == []
    _overfit_run(tmp_path / "flat", val, val_acc=acc[:20] + [0.6] * 40)
    assert len(_findings(tmp_path / "flat", "overfitting")) == 1


# early_stopping


def test_early_stopping_says_the_rest_bought_nothing_only_when_true(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    (finding,) = _findings(tmp_path, "early_stopping")
    assert finding.evidence["bought_nothing"] is True
    assert "the rest bought nothing" in finding.message


def test_early_stopping_says_what_the_run_gained_after_its_stop(tmp_path: Path) -> None:
    # a 7-evaluation stall, then a 30% fall: patience 5 would have stopped in the stall
    val = [2.0, 1.2, 0.8] + [0.8] * 7 + [0.7, 0.6, 0.56] + [0.56] * 7
    run = RunBuilder(tmp_path, "r")
    with_val(run, val).write()
    (finding,) = _findings(tmp_path, "early_stopping")
    assert finding.evidence["bought_nothing"] is False
    assert finding.evidence["patience_needed"] == 8
    assert finding.evidence["val_gain_after_stop"] > 0.25
    assert "too soon" in finding.message and "patience 8" in finding.message


def test_a_slow_steady_descent_is_not_a_stall(tmp_path: Path) -> None:
    # 0.5% per evaluation: no single one beats its predecessor by 1%, but every second
    # one beats the last improvement (the reference moves only when it improves)
    val = [1.0 * 0.995**i for i in range(40)]
    with_val(RunBuilder(tmp_path, "r"), val).write()
    assert _findings(tmp_path, "early_stopping") == []


# divergence


def _collapse(root: Path, tail: list[float]) -> None:
    run = RunBuilder(root, "r").scalars("loss", "train", noisy(_decay(200, 2.3, 0.3), 0.05))
    acc = [0.3, 0.5, 0.6, 0.62, 0.62, 0.63, 0.62] + tail
    run.scalars("acc", "val", acc, steps=_evals(acc)).write()


def test_divergence_finds_a_collapse_of_validation_accuracy(tmp_path: Path) -> None:
    _collapse(tmp_path / "recovered", [0.07, 0.3, 0.55, 0.6, 0.62])
    (finding,) = _findings(tmp_path / "recovered", "divergence")
    assert finding.subject == "acc/val" and finding.step == 80
    assert finding.evidence["recovered"] is True and "came back" in finding.message
    _collapse(tmp_path / "broken", [0.07, 0.08, 0.07])
    (finding,) = _findings(tmp_path / "broken", "divergence")
    assert "had not recovered" in finding.message


def test_divergence_leaves_a_dip_in_validation_accuracy_alone(tmp_path: Path) -> None:
    _collapse(tmp_path, [0.45, 0.6, 0.63])
    assert _findings(tmp_path, "divergence") == []


def test_divergence_reads_an_evaluation_only_log(tmp_path: Path) -> None:
    values = [2.3, 1.9, 1.5, math.nan, math.nan]
    RunBuilder(tmp_path, "r").scalars("loss", "val", values, steps=_evals(values)).write()
    (finding,) = _findings(tmp_path, "divergence")
    assert finding.subject == "loss/val" and finding.step == 40
