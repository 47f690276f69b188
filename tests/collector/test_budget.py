"""The overhead budget's strides follow the measured costs."""

from __future__ import annotations

import pytest

from collector.budget import ACTIVATION_RATIO, OverheadBudget, Strides


def run(
    budget: OverheadBudget, steps: range, *, step_s: float, stats_s: float, act_s: float
) -> list[tuple[int, Strides]]:
    changes = []
    for step in steps:
        stats = stats_s if budget.stats_sampled(step) else None
        act = act_s if budget.activations_sampled(step) else None
        total = step_s + (stats or 0.0) + (act or 0.0)
        new = budget.observe(step, step_seconds=total, stats_seconds=stats, activations_seconds=act)
        if new is not None:
            changes.append((step, new))
    return changes


def test_the_first_steps_are_dense_then_the_stride_meets_the_budget() -> None:
    budget = OverheadBudget(0.03, dense_steps=20)
    assert all(budget.stats_sampled(s) for s in range(1, 21))
    assert [s for s in range(1, 21) if budget.activations_sampled(s)] == [1, 6, 11, 16]
    # 100 ms steps, 30 ms of tensor statistics: 3 ms a step allowed -> every 10 steps
    # (+ activations 8 ms every 40 steps: 0.2 ms a step -> 11).
    changes = run(budget, range(1, 400), step_s=0.1, stats_s=0.03, act_s=0.008)
    assert changes == [(20, Strides(11, 11 * ACTIVATION_RATIO))]
    sampled = [s for s in range(21, 400) if budget.stats_sampled(s)]
    assert sampled[:3] == [23, 34, 45]


def test_the_amortised_share_stays_within_the_budget() -> None:
    budget = OverheadBudget(0.05)
    run(budget, range(1, 2001), step_s=0.004, stats_s=0.003, act_s=0.002)
    steps = range(1001, 2001)
    cost = sum(0.003 for s in steps if budget.stats_sampled(s)) + sum(
        0.002 for s in steps if budget.activations_sampled(s)
    )
    assert cost / (0.004 * len(steps)) <= 0.05


def test_cheap_statistics_keep_every_step() -> None:
    budget = OverheadBudget(0.03)
    assert run(budget, range(1, 200), step_s=0.1, stats_s=0.0001, act_s=0.0001) == [
        (20, Strides(1, ACTIVATION_RATIO))
    ]


def test_a_slightly_cheaper_stretch_keeps_the_stride_but_a_slower_machine_widens_it() -> None:
    budget = OverheadBudget(0.03, dense_steps=5)
    run(budget, range(1, 100), step_s=0.1, stats_s=0.03, act_s=0.0)
    assert budget.strides.stats_every == 10
    # 9 would do, but that is within the hysteresis band: no flapping.
    assert run(budget, range(100, 200), step_s=0.1, stats_s=0.027, act_s=0.0) == []
    changes = run(budget, range(200, 400), step_s=0.1, stats_s=0.06, act_s=0.0)
    assert changes and changes[-1][1].stats_every == 20


def test_untimed_steps_and_unsampled_steps_are_fine() -> None:
    budget = OverheadBudget(0.03, dense_steps=2)
    assert budget.observe(1, step_seconds=None) is None
    assert budget.observe(2, step_seconds=None, stats_seconds=0.01) is None  # no step time yet
    assert budget.observe(3, step_seconds=0.1, stats_seconds=0.01) == Strides(4, 16)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_a_budget_outside_0_1_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="budget"):
        OverheadBudget(bad)
