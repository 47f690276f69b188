"""The seed-catalogue rules (underfitting, loss_spike, loss_oscillation, accuracy_plateau,
update_ratio, stalled_parameters, unused_parameters, data_bottleneck) beyond the contract
test: the near misses each one must leave alone, and what its finding says."""

from __future__ import annotations

import math
import random
from pathlib import Path

from analysis import diagnose, load_rules, open_store
from analysis.findings import Finding
from store.records import Rows
from store.schema import Stream
from tests.analysis import cases
from tests.analysis.cases import acc_curve, epochs_of, noisy, param_stats, train_curve, with_val
from tests.builders import RunBuilder, publish

RULES = {r.id: r for r in load_rules()}


def _findings(root: Path, rule_id: str, **params: object) -> list[Finding]:
    store = open_store(root)
    return diagnose(store, rules=[RULES[rule_id]], params={rule_id: params}).findings


# underfitting


def test_underfitting_leaves_a_run_that_learns_nothing_to_loss_not_decreasing(
    tmp_path: Path,
) -> None:
    # 2.3 -> 2.23: a 3% decrease, under the 5% both rules call progress
    levels = [2.3 - 0.07 * i / 79 for i in range(80)]
    run = RunBuilder(tmp_path, "flat").scalars("loss", "train", noisy(levels, 0.005))
    with_val(run, [2.25] * 8).write()
    assert _findings(tmp_path, "underfitting") == []
    assert len(_findings(tmp_path, "underfitting", min_progress=0.01)) == 1


def test_underfitting_needs_validation_to_be_no_better_than_training(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "high-and-gapped")
    run.scalars("loss", "train", noisy([1.5 + 0.8 * math.exp(-5 * i / 100) for i in range(100)]))
    with_val(run, [2.0 + 0.5 * math.exp(-5 * (i + 1) / 10) for i in range(10)]).write()
    assert _findings(tmp_path, "underfitting") == []  # 1.5 train vs 2.0 val: a 33% gap


def test_underfitting_reads_a_low_training_accuracy_when_the_loss_scale_hides_it(
    tmp_path: Path,
) -> None:
    # the loss fell to ~40% of its start (not "high"), but the model is right a third of the time
    run = RunBuilder(tmp_path, "low-acc")
    run.scalars("loss", "train", noisy([0.9 + 1.4 * math.exp(-5 * i / 100) for i in range(100)]))
    run.scalars("acc", "train", acc_curve(start=0.1, end=0.33), epochs=epochs_of(100))
    with_val(run, [0.92 + 1.4 * math.exp(-5 * (i + 1) / 10) for i in range(10)]).write()
    (finding,) = _findings(tmp_path, "underfitting")
    assert finding.evidence["acc_low"] is True and finding.evidence["loss_high"] is False
    assert "training acc 0.1" in finding.message


def test_underfitting_is_silent_on_an_overfitting_run(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    assert _findings(tmp_path, "underfitting") == []


# loss_spike


def _with_spike(values: list[float], at: int, factor: float) -> list[float]:
    return [*values[:at], factor * values[at - 1], *values[at + 1 :]]


def test_spike_lists_each_recovered_spike_and_leaves_a_lasting_jump_out(tmp_path: Path) -> None:
    values = _with_spike(train_curve(), 40, 3.0)
    values[70:] = noisy([4 * values[69]] * 30, 0.05, seed=4)  # jumps at step 71 and stays up
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    (finding,) = _findings(tmp_path, "loss_spike")
    assert finding.step == 41
    assert [s["step"] for s in finding.evidence["spikes"]] == [41]
    assert finding.evidence["unrecovered_jumps"] == 0  # the level after it is its own median
    assert finding.evidence["spikes"][0]["recovered_by_step"] == 42
    assert finding.evidence["spikes"][0]["spreads"] > finding.evidence["k"]


def test_a_jump_that_does_not_come_back_is_not_a_spike(tmp_path: Path) -> None:
    values = train_curve()
    values[60:] = noisy([4 * values[59]] * 40, 0.05, seed=4)
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    assert _findings(tmp_path, "loss_spike") == []


def test_a_loss_that_diverges_after_jumping_is_not_a_spike(tmp_path: Path) -> None:
    cases.divergence(tmp_path).write()
    assert _findings(tmp_path, "loss_spike") == []


def test_a_blip_at_a_converged_loss_is_not_a_spike_unless_asked(tmp_path: Path) -> None:
    # 3x of a loss of ~0.02 is a jump of 0.04: 2% of the 2.0 the run started at
    values = _with_spike(train_curve(end=0.01), 90, 3.0)
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    assert _findings(tmp_path, "loss_spike") == []
    (finding,) = _findings(tmp_path, "loss_spike", min_height=0.01)
    assert finding.step == 91


def _heavy_tailed(n: int, sigma: float, seed: int) -> list[float]:
    """A falling curve times lognormal batch noise: small batches draw one-step blips of
    several times the local level as a matter of course."""
    rng = random.Random(seed)
    return [level * rng.lognormvariate(0.0, sigma) for level in train_curve(n, end=0.1)]


def test_one_step_blips_of_the_runs_own_heavy_tailed_noise_are_not_spikes(
    tmp_path: Path,
) -> None:
    values = _heavy_tailed(300, 0.6, seed=5)  # blips up to ~6x the local median
    assert max(v / w for v, w in zip(values[1:], values, strict=False)) > 4
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    assert _findings(tmp_path, "loss_spike") == []


def test_a_blip_rare_for_a_quiet_run_is_a_spike_even_at_3x(tmp_path: Path) -> None:
    values = _heavy_tailed(300, 0.02, seed=5)
    values[150] *= 3.0
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    (finding,) = _findings(tmp_path, "loss_spike")
    assert finding.step == 151
    assert finding.evidence["threshold_ratio"] == 2.0  # the 2x floor: the noise is far below
    assert finding.evidence["tail_ratio"] < 1.1


def test_a_blip_on_the_last_batch_of_an_epoch_is_expected(tmp_path: Path) -> None:
    # 20 steps per epoch; the short last batch of each epoch jumps 4x, one step mid-epoch too
    values = _heavy_tailed(200, 0.02, seed=6)
    for end in range(19, 200, 20):
        values[end] *= 4.0
    values[110] *= 4.0
    RunBuilder(tmp_path, "r").scalars("loss", "train", values, epochs=epochs_of(200, 20)).write()
    (finding,) = _findings(tmp_path, "loss_spike")
    assert [s["step"] for s in finding.evidence["spikes"]] == [111]
    assert finding.evidence["epoch_end_blips"] >= 8


# loss_oscillation


def test_oscillation_ignores_minibatch_noise_that_is_large_only_next_to_a_small_loss(
    tmp_path: Path,
) -> None:
    # +-30% batch to batch, but the loss has come down from 2.0 to ~0.1
    levels = [0.05 + 1.95 * math.exp(-4 * i / 100) for i in range(100)]
    RunBuilder(tmp_path, "r").scalars("loss", "train", noisy(levels, 0.3, seed=8)).write()
    assert _findings(tmp_path, "loss_oscillation") == []


def test_oscillation_ignores_ordinary_noise_around_a_flat_loss(tmp_path: Path) -> None:
    cases.loss_not_decreasing(tmp_path).write()  # +-2% around 2.3
    assert _findings(tmp_path, "loss_oscillation") == []


def test_a_lone_spike_is_not_an_oscillation(tmp_path: Path) -> None:
    cases.loss_spike(tmp_path).write()
    assert _findings(tmp_path, "loss_oscillation") == []


def test_oscillation_measures_the_bounce_against_the_scale_of_the_run(tmp_path: Path) -> None:
    cases.loss_oscillation(tmp_path).write()
    (finding,) = _findings(tmp_path, "loss_oscillation")
    assert finding.evidence["relative_sigma"] > 0.25
    assert finding.evidence["sign_flip_share"] > 0.9  # a zigzag, not white noise (~0.5)
    assert _findings(tmp_path, "loss_oscillation", min_amplitude=0.5) == []


def _floor(start: float, floor: float, noise: list[float], n: int = 200) -> list[float]:
    """A loss falling from ``start`` to ``floor`` times (1 + noise[i])."""
    return [
        (floor + (start - floor) * math.exp(-8 * i / n)) * (1 + noise[i % len(noise)])
        for i in range(n)
    ]


def test_minibatch_noise_at_a_high_floor_is_not_an_oscillation(tmp_path: Path) -> None:
    # a regression target's floor (R^2 ~0.5): +-35% white noise, 17% of the start, 35% of the level
    rng = random.Random(9)
    values = _floor(1.0, 0.5, [0.35 * rng.gauss(0.0, 1.0) for _ in range(200)])
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    assert _findings(tmp_path, "loss_oscillation") == []
    (finding,) = _findings(tmp_path, "loss_oscillation", min_to_level=0.2)
    assert 0.1 < finding.evidence["relative_sigma"] < finding.evidence["sigma_to_level"] < 0.5
    assert finding.evidence["zigzag"] is False


def test_a_loss_that_bounces_by_its_own_level_oscillates(tmp_path: Path) -> None:
    # learning rate too high: 2.3 -> ~0.5, bouncing between ~0.1 and ~1.5 in no regular pattern
    rng = random.Random(10)
    values = _floor(2.3, 0.5, [rng.lognormvariate(0.0, 0.9) - 1 for _ in range(200)])
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    (finding,) = _findings(tmp_path, "loss_oscillation")
    assert finding.evidence["bounces_by_level"] is True and finding.evidence["zigzag"] is False
    assert "of the level it sits around" in finding.message


def test_a_regular_zigzag_oscillates_even_below_half_its_level(tmp_path: Path) -> None:
    # +-20% up, down, up around a floor of 1.0, from 2.3: 13% of the scale, 30% of the level
    rng = random.Random(11)
    values = _floor(2.3, 1.0, [0.2 * (-1) ** i * rng.uniform(0.6, 1.0) for i in range(200)])
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).write()
    (finding,) = _findings(tmp_path, "loss_oscillation")
    assert finding.evidence["zigzag"] is True and finding.evidence["bounces_by_level"] is False
    assert "a zigzag" in finding.message


# accuracy_plateau


def _plateau(root: Path, lr: list[float], *, train_acc: float = 0.62, scale: float = 1.0) -> None:
    """Validation accuracy rises for five evaluations, then stays at 0.6 for fifteen."""
    run = RunBuilder(root, "plateau")
    run.scalars("lr", "train", lr, steps=range(1, len(lr) + 1))
    val = [0.2, 0.35, 0.48, 0.56, 0.6] + noisy([0.6] * 15, 0.004, seed=5)
    steps = [10 * (i + 1) for i in range(20)]
    run.scalars("acc", "val", [scale * v for v in val], steps=steps)
    train = noisy([scale * train_acc] * 200, 0.005, seed=6)
    run.scalars("acc", "train", [min(scale, v) for v in train], epochs=epochs_of(200)).write()


def test_accuracy_plateau_blames_a_learning_rate_decayed_just_before_it(tmp_path: Path) -> None:
    cases.accuracy_plateau(tmp_path).write()
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert "LR decayed too early" in finding.message
    assert finding.subject == "acc/val" and finding.step == 50
    assert finding.evidence["lr_drop_step"] == 46 and finding.evidence["flat_evaluations"] == 15


def test_accuracy_plateau_without_a_decay_does_not_mention_the_learning_rate(
    tmp_path: Path,
) -> None:
    _plateau(tmp_path, [0.1] * 200)
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert "LR decayed" not in finding.message
    assert finding.evidence["lr_decayed_early"] is False


def test_accuracy_plateau_does_not_blame_a_decay_long_before_it(tmp_path: Path) -> None:
    # cut at step 5; the plateau starts at step 50, with its 10-evaluation lookback from step 0
    # only when patience allows: with patience 3 the lookback starts at step 10
    _plateau(tmp_path, [0.1] * 4 + [1e-3] * 196)
    (default,) = _findings(tmp_path, "accuracy_plateau")
    assert "LR decayed too early" in default.message
    (short,) = _findings(tmp_path, "accuracy_plateau", patience=3)
    assert "LR decayed" not in short.message


def test_accuracy_plateau_leaves_a_model_that_fits_its_training_data_alone(
    tmp_path: Path,
) -> None:
    _plateau(tmp_path, [0.1] * 200, train_acc=1.0)
    assert _findings(tmp_path, "accuracy_plateau") == []


def test_accuracy_plateau_reads_accuracy_logged_in_percent(tmp_path: Path) -> None:
    _plateau(tmp_path, [0.1] * 200, scale=100.0)
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert finding.evidence["min_delta"] == 0.5 and finding.evidence["level"] == 60.0


def test_accuracy_plateau_falls_back_to_training_accuracy_per_epoch(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "train-only")
    rising = acc_curve(60, start=0.1, end=0.5, seed=1)
    flat = noisy([0.5] * 140, 0.004, seed=2)
    run.scalars("acc", "train", rising + flat, epochs=epochs_of(200)).write()
    (finding,) = _findings(tmp_path, "accuracy_plateau")
    assert finding.subject == "acc/train" and finding.evidence["evaluations"] == 20
    assert _findings(tmp_path, "accuracy_plateau", patience=20) == []


# update_ratio


def test_update_ratio_accepts_ratios_inside_the_band_near_its_edges(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"a.weight": 2e-5, "b.weight": 1e-3, "c.weight": 0.05}).write()
    assert _findings(tmp_path, "update_ratio") == []


def test_update_ratio_below_the_band_is_stalled_learning(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"a.weight": 1e-3, "b.weight": 5e-6, "c.weight": 2e-6}).write()
    (finding,) = _findings(tmp_path, "update_ratio")
    assert finding.message.startswith("too low: stalled learning")
    assert finding.subject == "c.weight"
    assert [o["param"] for o in finding.evidence["offenders"]] == ["c.weight", "b.weight"]
    assert _findings(tmp_path, "update_ratio", low=1e-6) == []


def test_update_ratio_reports_each_direction_once(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"a.weight": 0.5, "b.weight": 1e-3, "c.weight": 1e-7}).write()
    found = {f.evidence["direction"]: f.subject for f in _findings(tmp_path, "update_ratio")}
    assert found == {"high": "a.weight", "low": "c.weight"}


def test_update_ratio_skips_the_warm_up(tmp_path: Path) -> None:
    # Adam's first steps: every element moves by ~lr, a large share of a small-init matrix
    run = RunBuilder(tmp_path, "r")
    run.tensors("fc.weight", "weight", [0.01] * 4 + [5.0] * 36)
    run.tensors("fc.weight", "update", [0.01] * 4 + [5e-3] * 36).write()
    assert _findings(tmp_path, "update_ratio") == []
    assert _findings(tmp_path, "update_ratio", warmup_frac=0.0) == []  # median still in band
    assert len(_findings(tmp_path, "update_ratio", warmup_frac=0.0, high=1e-4)) == 1


def test_update_ratio_skips_a_learning_rate_warm_up_until_its_peak(tmp_path: Path) -> None:
    # the learning rate ramps up over the first 60 of 100 steps; the ratios are large then
    run = RunBuilder(tmp_path, "r")
    run.scalars("lr", "train", [1e-3 * min(1.0, s / 60) for s in range(1, 101)])
    run.tensors("fc.weight", "weight", [5.0] * 100, numel=2048)
    run.tensors("fc.weight", "update", [2.5] * 60 + [0.05] * 40, numel=2048).write()
    assert _findings(tmp_path, "update_ratio") == []  # warm-up to step 50: half the run at most
    (finding,) = _findings(tmp_path, "update_ratio", warmup_cap=0.0)
    assert finding.evidence["direction"] == "high"
    assert finding.evidence["warmup_until_step"] == 10  # the plain 10% without the schedule


def test_update_ratio_judges_weight_matrices_only(tmp_path: Path) -> None:
    # a bias and a normalisation layer's scale start near 0 and 1 whatever the layer's
    # size: their ratio says nothing of the learning rate (a regression's bias moving 27%
    # a step is SGD noise around a small value)
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"fc.weight": 1e-3, "fc.bias": 0.3, "ln.weight": 0.2, "temperature": 0.5})
    for param in ("scale.weight", "scale.bias"):  # an elementwise scale: weight and bias alike
        run.tensors(param, "weight", [1.0] * 40, numel=32)
        run.tensors(param, "update", [0.2] * 40, numel=32)
    run.write()
    # the model summary says ln is a LayerNorm (its weight has no bias beside it)
    ln = {"module": ["ln"], "module_type": ["LayerNorm"], "own_params": [2048]}
    publish(
        tmp_path,
        "r",
        Stream.MODULES,
        [Rows(Stream.MODULES, 1, None, 1.0, ln)],
        segment=0,
        first_seq=10_000,
    )
    assert _findings(tmp_path, "update_ratio") == []
    (finding,) = _findings(tmp_path, "update_ratio", high=1e-4)
    assert finding.subject == "fc.weight" and finding.evidence["matrices"] == 1


# stalled_parameters


def test_stalled_parameters_leaves_gradients_too_small_for_float32_to_vanishing(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"top.weight": 1e-3})
    run.tensors("deep.weight", "grad", noisy([1e-10] * 40, 0.3))
    run.tensors("deep.weight", "weight", [5.0] * 40)
    run.tensors("deep.weight", "update", [0.0] * 40).write()
    assert _findings(tmp_path, "stalled_parameters") == []
    assert [f.subject for f in _findings(tmp_path, "stalled_parameters", min_grad_ratio=0.0)] == [
        "deep.weight"
    ]


def test_stalled_parameters_tolerates_a_few_skipped_steps(tmp_path: Path) -> None:
    # AMP's GradScaler skips the steps whose gradients overflowed: no parameter moves then
    run = RunBuilder(tmp_path, "r")
    for p in ("a.weight", "b.weight"):
        run.tensors(p, "grad", [1.0] * 40)
        run.tensors(p, "weight", [5.0] * 40)
        run.tensors(p, "update", [0.0 if s % 15 == 0 else 5e-3 for s in range(1, 41)])
    run.write()
    assert _findings(tmp_path, "stalled_parameters") == []


def test_stalled_parameters_names_a_learning_rate_of_zero(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r").scalars("lr", "train", [0.0] * 40)
    param_stats(run, {"a.weight": 0.0, "b.weight": 0.0}).write()
    (finding,) = _findings(tmp_path, "stalled_parameters")
    assert finding.subject == "a.weight"
    assert "2 of 2 parameters" in finding.message and "learning rate is 0" in finding.message


# unused_parameters


def test_unused_parameters_leaves_a_parameter_used_on_some_steps_alone(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"router.weight": 1e-3})
    run.tensors("expert3.weight", "grad", [0.2] * 5, steps=[3, 11, 19, 27, 35])
    run.tensors("expert3.weight", "weight", [2.0] * 40).write()
    assert _findings(tmp_path, "unused_parameters") == []


def test_unused_parameters_tells_all_zero_gradients_from_none(tmp_path: Path) -> None:
    # in the graph but blocked (dead ReLUs after it) is not the same fault as not in the graph
    run = RunBuilder(tmp_path, "r")
    param_stats(run, {"fc.weight": 1e-3})
    run.tensors("blocked.weight", "grad", [0.0] * 40)
    run.tensors("blocked.weight", "weight", [2.0] * 40)
    run.tensors("aux.weight", "weight", [2.0] * 40).write()
    found = {f.evidence["cause"]: f for f in _findings(tmp_path, "unused_parameters")}
    assert sorted(found) == ["not_in_graph", "zero_gradient"]
    assert found["zero_gradient"].subject == "blocked.weight"
    assert "all zeros" in found["zero_gradient"].message
    assert found["not_in_graph"].subject == "aux.weight"
    assert ".grad stayed None" in found["not_in_graph"].message


def test_unused_parameters_is_silent_when_no_parameter_gets_a_gradient(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    for p in ("a.weight", "b.weight"):
        run.tensors(p, "grad", [0.0] * 20)
        run.tensors(p, "weight", [2.0] * 20)
    run.write()
    assert _findings(tmp_path, "unused_parameters") == []


# data_bottleneck


def test_data_bottleneck_ignores_a_wait_below_half_the_step(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    run.system(noisy([0.2] * 60, 0.05), noisy([0.09] * 60, 0.05, seed=1)).write()
    assert _findings(tmp_path, "data_bottleneck") == []
    (finding,) = _findings(tmp_path, "data_bottleneck", threshold=0.4)
    assert finding.evidence["data_bound_steps"] == 55 and finding.step == 6


def test_data_bottleneck_skips_the_workers_start_up(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r")
    run.system([1.0] * 5 + [0.2] * 55, [0.9] * 5 + [0.02] * 55).write()
    assert _findings(tmp_path, "data_bottleneck") == []


def test_data_bottleneck_says_how_much_time_went_to_waiting(tmp_path: Path) -> None:
    cases.data_bottleneck(tmp_path).write()
    (finding,) = _findings(tmp_path, "data_bottleneck")
    assert 0.6 < finding.evidence["total_data_share"] < 0.8
    assert finding.evidence["timed_steps"] == 55  # the first 5 are skipped
    assert "waits for data" in finding.message
