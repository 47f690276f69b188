"""The overhead budget's strides follow the measured costs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from collector import Collector, ConfigError
from collector.budget import (
    ACTIVATION_RATIO,
    BURST_STEPS,
    DENSE_ACTIVATIONS_EVERY,
    DENSE_STEPS,
    LossWatch,
    OverheadBudget,
    Strides,
)
from collector.params import ParamWatcher
from store.schema import Stream
from tests.collector.read_back import read_stream


def run(
    budget: OverheadBudget,
    steps: range,
    *,
    step_s: float,
    stats_s: float,
    act_s: float,
    fixed_s: float | None = None,
) -> list[tuple[int, Strides]]:
    changes = []
    for step in steps:
        stats = stats_s if budget.stats_sampled(step) else None
        act = act_s if budget.activations_sampled(step) else None
        new = budget.observe(
            step,
            step_seconds=step_s,
            stats_seconds=stats,
            activations_seconds=act,
            fixed_seconds=fixed_s,
        )
        if new is not None:
            changes.append((step, new))
    return changes


def test_the_first_steps_are_dense_then_the_stride_meets_the_budget() -> None:
    budget = OverheadBudget(0.03, dense_steps=20)
    assert all(budget.stats_sampled(s) for s in range(1, 21))
    assert [s for s in range(1, 21) if budget.activations_sampled(s)] == [1, 6, 11, 16]
    # 100 ms steps, 30 ms of tensor statistics + 8 ms of activations a quarter as often:
    # 32 ms a round; 3 ms a step allowed -> every 11 steps would do, the 80 % aim -> 14.
    changes = run(budget, range(1, 400), step_s=0.1, stats_s=0.03, act_s=0.008)
    assert changes == [(20, Strides(14, 14 * ACTIVATION_RATIO))]
    sampled = [s for s in range(21, 400) if budget.stats_sampled(s)]
    assert sampled[:3] == [29, 43, 57]


def test_the_amortised_share_stays_within_the_budget() -> None:
    budget = OverheadBudget(0.05)
    run(budget, range(1, 2001), step_s=0.004, stats_s=0.003, act_s=0.002)
    steps = range(1001, 2001)
    cost = sum(0.003 for s in steps if budget.stats_sampled(s)) + sum(
        0.002 for s in steps if budget.activations_sampled(s)
    )
    assert cost / (0.004 * len(steps)) <= 0.05


def test_the_fixed_cost_of_every_step_comes_out_of_the_budget_first() -> None:
    # 100 ms steps, 30 ms of statistics: 3 ms a step allowed. The collector's hooks,
    # NaN check and log() cost 1 ms on every step, so 2 ms are left: every 15 steps, and
    # the 80 % aim of the whole budget (2.4 ms) leaves 1.4 ms: every 22.
    budget = OverheadBudget(0.03, dense_steps=20)
    changes = run(budget, range(1, 400), step_s=0.1, stats_s=0.03, act_s=0.0, fixed_s=0.001)
    assert changes == [(20, Strides(22, 22 * ACTIVATION_RATIO))]
    assert budget.measured["fixed_ms"] == pytest.approx(1.0)
    steps = range(101, 400)
    cost = sum(0.03 for s in steps if budget.stats_sampled(s)) + 0.001 * len(steps)
    assert cost / (0.1 * len(steps)) <= 0.03


def test_a_fixed_cost_over_the_budget_leaves_the_statistics_half_of_it() -> None:
    budget = OverheadBudget(0.03, dense_steps=20)
    run(budget, range(1, 100), step_s=0.1, stats_s=0.03, act_s=0.0, fixed_s=0.005)
    # Half of the 80 % aim: 1.2 ms a step for 30 ms of statistics -> every 25 steps.
    assert budget.strides.stats_every == 25


def test_cheap_statistics_keep_every_step() -> None:
    budget = OverheadBudget(0.03)
    assert run(budget, range(1, 200), step_s=0.1, stats_s=0.0001, act_s=0.0001) == [
        (20, Strides(1, ACTIVATION_RATIO))
    ]


def test_a_slightly_cheaper_stretch_keeps_the_stride_but_a_slower_machine_widens_it() -> None:
    budget = OverheadBudget(0.03, dense_steps=5)
    run(budget, range(1, 100), step_s=0.1, stats_s=0.03, act_s=0.0)
    assert budget.strides.stats_every == 13  # 10 meets the budget, 13 its 80 % aim
    # 12 would aim at 80 %, but that is within the hysteresis band: no flapping.
    assert run(budget, range(100, 200), step_s=0.1, stats_s=0.027, act_s=0.0) == []
    changes = run(budget, range(200, 600), step_s=0.1, stats_s=0.06, act_s=0.0)
    assert changes and 20 <= changes[-1][1].stats_every <= 25


def test_untimed_steps_and_unsampled_steps_are_fine() -> None:
    budget = OverheadBudget(0.03, dense_steps=2)
    assert budget.observe(1, step_seconds=None) is None
    assert budget.observe(2, step_seconds=None, stats_seconds=0.5) is None  # warm-up, left out
    # 10 ms of 100 ms: 4 would meet the budget, 5 meets 80 % of it.
    assert budget.observe(3, step_seconds=0.1, stats_seconds=0.01) == Strides(5, 20)


def test_a_burst_makes_the_next_steps_dense_then_the_stride_is_decided_again() -> None:
    budget = OverheadBudget(0.03, dense_steps=5)
    run(budget, range(1, 50), step_s=0.1, stats_s=0.03, act_s=0.0)
    assert budget.strides.stats_every == 13 and not budget.stats_sampled(50)
    assert budget.burst(50) == Strides(1, DENSE_ACTIVATIONS_EVERY)
    assert budget.burst(55) is None, "already dense: extended, not announced again"
    assert budget.dense_until == 55 + BURST_STEPS - 1
    assert all(budget.stats_sampled(s) for s in range(50, budget.dense_until + 1))
    changes = run(budget, range(50, 120), step_s=0.1, stats_s=0.03, act_s=0.0)
    assert changes == [(budget.dense_until, Strides(13, 52))]


def test_loss_watch_fires_on_a_jump_and_on_the_first_non_finite_value() -> None:
    watch = LossWatch(warmup=10)
    noisy = [2.0 - 0.01 * i + (0.3 if i % 3 else -0.3) for i in range(40)]
    assert [watch.update(v) for v in noisy] == [None] * 40, "noise is no jump"
    assert watch.update(5.0) == "loss jumped"
    assert watch.update(float("nan")) == "loss non-finite"
    assert watch.update(float("inf")) is None, "said once"
    early = LossWatch(warmup=10)
    assert [early.update(v) for v in (2.3, 9.0, 2.2)] == [None] * 3, "no level yet to jump from"


def test_loss_watch_ignores_a_hard_batch_of_a_converged_loss_but_not_an_explosion() -> None:
    watch = LossWatch(warmup=10)
    falling = [2.3 * 0.9**i for i in range(60)]  # down to ~0.004
    converged = [0.004, 0.002, 0.003, 0.005, 0.002] * 10
    assert [watch.update(v) for v in falling + converged] == [None] * 110
    # One hard batch: 30x the level and far outside its spread, but 0.12 against a loss
    # that started at 2.3 is batch noise (the overhead benchmark's CNN had 14 of them).
    assert watch.update(0.124) is None
    assert [watch.update(v) for v in converged] == [None] * 50
    assert watch.update(1.5) == "loss jumped", "back to most of the initial loss"


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_a_budget_outside_0_1_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="budget"):
        OverheadBudget(bad)


# -- the budget inside a Collector ------------------------------------------------------


def _train(
    tmp_path: Path, steps: int, *, losses: dict[int, float] | None = None, **options: Any
) -> Path:
    """A tiny MLP; ``losses`` are logged as the train loss at those steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    with Collector(tmp_path, model=model, optimizer=opt, **options) as tel:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if losses and tel.step in losses:
                tel.log({"loss": losses[tel.step]}, split="train")
    return tel.run_dir


def _slow_stats(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.004) -> None:
    """Sampled tensor statistics cost ``seconds`` more (~10x a step of the tiny MLP)."""
    original = ParamWatcher.on_after_optimizer_step

    def slow(self: ParamWatcher) -> Any:
        columns = original(self)
        if columns is not None:
            time.sleep(seconds)
        return columns

    monkeypatch.setattr(ParamWatcher, "on_after_optimizer_step", slow)


def _steps(run_dir: Path, stream: Stream) -> list[int]:
    return sorted(set(read_stream(run_dir, stream).column("step").to_pylist()))


def _sampling_events(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    events = read_stream(run_dir, Stream.EVENTS).to_pylist()
    return [(e["step"], json.loads(e["payload"])) for e in events if e["kind"] == "sampling"]


def _expected(
    first: int, last: int, changes: list[tuple[int, dict[str, Any]]], key: str
) -> list[int]:
    """Steps a stride schedule samples after the dense start, from its sampling events."""
    sampled = []
    for step in range(first, last + 1):
        every = [c[key] for s, c in changes if s < step][-1]
        if every and (step - 1) % every == 0:
            sampled.append(step)
    return sampled


def test_default_collector_is_dense_first_then_follows_the_strides_it_records(
    tmp_path: Path,
) -> None:
    run_dir = _train(tmp_path, 80)
    tensors, activations = _steps(run_dir, Stream.TENSORS), _steps(run_dir, Stream.ACTIVATIONS)
    assert tensors[:DENSE_STEPS] == list(range(1, DENSE_STEPS + 1))
    assert [s for s in activations if s <= DENSE_STEPS] == [1, 6, 11, 16]
    changes = _sampling_events(run_dir)
    assert changes and changes[0][0] == DENSE_STEPS, "the first stride is recorded at once"
    for _, payload in changes:
        assert payload["overhead_budget"] == 0.03 and payload["step_ms"] > 0
        assert payload["activations_every"] == payload["stats_every"] * ACTIVATION_RATIO
    assert [s for s in tensors if s > DENSE_STEPS] == _expected(21, 80, changes, "stats_every")
    assert [s for s in activations if s > DENSE_STEPS] == _expected(
        21, 80, changes, "activations_every"
    )
    started = json.loads(read_stream(run_dir, Stream.EVENTS).to_pylist()[0]["payload"])
    assert started["sampling"] == {
        "stats_every": 1,
        "activations_every": 5,
        "overhead_budget": 0.03,
        "dense_steps": DENSE_STEPS,
    }


def test_expensive_statistics_are_sampled_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_stats(monkeypatch)
    run_dir = _train(tmp_path, 60)
    changes = _sampling_events(run_dir)
    for _, payload in changes:
        assert payload["stats_ms"] >= 4.0
        # The stride is what the measured costs allow: cost / (budget x step time),
        # the step time without the collector's work (the sleep included).
        assert payload["stats_every"] >= payload["stats_ms"] / (0.03 * payload["step_ms"])
    later = [s for s in _steps(run_dir, Stream.TENSORS) if s > DENSE_STEPS]
    assert later == _expected(21, 60, changes, "stats_every")
    assert len(later) <= 40 / min(p["stats_every"] for _, p in changes) + 1


def test_a_jump_of_the_training_loss_makes_the_next_steps_dense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Measured costs replaced by fixed ones (a loaded machine must not narrow the
    # stride): statistics 4 ms on 1 ms steps -> a stride far wider than the run.
    observe = OverheadBudget.observe

    def fixed(self: OverheadBudget, step: int, **seconds: float | None) -> Strides | None:
        costs = {k: (None if v is None else 0.004) for k, v in seconds.items()}
        return observe(self, step, **(costs | {"step_seconds": 0.001}))

    monkeypatch.setattr(OverheadBudget, "observe", fixed)
    losses = {s: 1.0 for s in range(1, 101)} | {60: 9.0, 61: float("nan")}
    run_dir = _train(tmp_path, 100, losses=losses)
    tensors = _steps(run_dir, Stream.TENSORS)
    assert len([s for s in tensors if DENSE_STEPS < s <= 60]) < 10, "sparse before"
    assert set(range(61, 61 + BURST_STEPS)) <= set(tensors), "every step after the jump"
    (burst,) = [p for s, p in _sampling_events(run_dir) if s == 60]
    assert burst["reason"] == "loss jumped" and burst["stats_every"] == 1
    assert burst["until"] == 60 + BURST_STEPS, "the NaN at 61 fell inside the burst"


def test_a_stride_the_user_gives_is_kept(tmp_path: Path) -> None:
    run_dir = _train(tmp_path, 40, stats_every=3, activations_every=0)
    assert _steps(run_dir, Stream.TENSORS) == list(range(1, 41, 3))
    assert _steps(run_dir, Stream.ACTIVATIONS) == []
    assert _sampling_events(run_dir) == [], "nothing adapts, so no stride events"


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "3%", True, None])
def test_overhead_budget_must_be_a_fraction(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="overhead_budget"):
        Collector(tmp_path, overhead_budget=bad)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir()), "a refused collector leaves no run behind"
