"""The overhead budget: how often to sample statistics so that they cost a set share.

Tensor statistics (per-parameter grad/weight/update) and activation statistics cost
a roughly fixed time per sampled step, which is large for big models on a CPU (one
pass over every weight, gradient and the previous weights) and tiny elsewhere. The
collector measures that cost and the step time, and this controller turns them into
strides::

    share = (stats_cost / stats_every + activations_cost / activations_every) / step_time

is kept at or under ``budget`` less the collector's fixed cost per step (its hooks,
the NaN check, ``log()`` and its bookkeeping: paid on every step, sampled or not,
so it comes out of the budget first), with activations sampled ``ACTIVATION_RATIO``
times less often than tensor statistics, and never more often than every step. When
the fixed cost alone uses up the budget, the statistics keep half of it (they
are what the collector is for); the ``sampling`` event says so with the figures.

A stride the user fixed (``stats_every=N`` or ``activations_every=N``) is kept as
given; its amortised cost is taken out of the budget first and the other stride
adapts to what is left (at least half the budget).

Dense stretches: the first ``dense_steps`` steps are always recorded densely
(initialisation problems show there: dead units, vanishing gradients at step 1):
tensor statistics every step, activations every ``DENSE_ACTIVATIONS_EVERY`` steps.
So are the ``BURST_STEPS`` steps after the training loss misbehaves (``LossWatch``:
it jumps to ``JUMP`` times its running level, or turns NaN/Inf), so that an
explosion or a spike between two samples is recorded step by step as it unfolds.

After a dense stretch the strides follow the measured costs (exponential moving
averages; the first measurement of each kind is left out: it holds one-off warm-up
costs). The stride is re-decided only when a new cost was measured. It widens as
soon as the budget is exceeded, to the stride that meets ``AIM`` of the budget (a
margin, so that noise does not widen it again at the next sample), and narrows only
when that stride is ``HYSTERESIS`` below the current one: strides do not flap.

Pure bookkeeping: no torch, no clock; the collector passes the measured seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DENSE_STEPS = 20
"""The first steps, recorded densely whatever the budget."""

BURST_STEPS = 20
"""Steps recorded densely after the training loss misbehaves."""

ACTIVATION_RATIO = 4
"""Activations are sampled this many times less often than tensor statistics."""

DENSE_ACTIVATIONS_EVERY = 5
"""Activation sampling stride during a dense stretch."""

AIM = 0.8
"""A widened stride meets this fraction of the budget (the rest is margin for noise)."""

HYSTERESIS = 0.25
"""A narrower stride is taken only when it is this fraction below the current one."""

JUMP = 2.0
"""A training loss this many times its running level (and ``SPREAD`` deviations above
it) starts a dense burst."""

SPREAD = 6.0

JUMP_FLOOR = 0.1
"""...and by at least this fraction of the highest running level seen: a loss that
has converged near zero jumps 30x on one hard batch (0.004 -> 0.12 on the overhead
benchmark's CNN, 14 bursts in 1,000 healthy steps without this floor), which is
batch noise, not an explosion."""

FLOOR = 0.5
"""The share of the budget the sampled statistics keep whatever the fixed cost: on a
small model the collector's fixed cost per step can exceed the whole budget (the
overhead benchmark's CNN: ~0.4 ms of an 8 ms step), and statistics starved to a tenth
of it left a 276-step demo run with one sample after its dense start."""

MAX_STRIDE = 10_000

_EMA = 0.2  # weight of the newest cost measurement (one per sampled step)
_EMA_STEP = 0.05  # weight of the newest step time (one per step: a longer memory)


@dataclass(frozen=True)
class Strides:
    stats_every: int
    activations_every: int


class OverheadBudget:
    """Chooses sampling strides from measured costs (see the module docstring)."""

    def __init__(
        self,
        budget: float,
        *,
        dense_steps: int = DENSE_STEPS,
        stats_every: int | None = None,
        activations_every: int | None = None,
    ) -> None:
        if not (0 < budget < 1):
            raise ValueError(f"overhead budget must be a fraction in (0, 1), got {budget!r}")
        self.budget = budget
        self.dense_steps = dense_steps
        self.fixed_stats_every = stats_every
        self.fixed_activations_every = activations_every
        self._stride = 1
        self._dense_until = dense_steps  # the last step of the current dense stretch
        self._decided = False  # a stride was chosen since the dense stretch ended
        self._stats_cost: float | None = None
        self._activations_cost: float | None = None
        self._seen = {"stats": 0, "activations": 0}
        self._step_time: float | None = None
        self._fixed_cost: float | None = None
        # Asked twice a step (the stats and activations schedules): made once, not per call.
        self.dense = Strides(
            1 if stats_every is None else stats_every,
            DENSE_ACTIVATIONS_EVERY if activations_every is None else activations_every,
        )
        """The strides used inside dense stretches."""
        self.strides = self._strides_of(self._stride)
        """The strides used outside dense stretches (0: never)."""

    def _strides_of(self, stride: int) -> Strides:
        stats = self.fixed_stats_every
        activations = self.fixed_activations_every
        return Strides(
            stride if stats is None else stats,
            stride * ACTIVATION_RATIO if activations is None else activations,
        )

    def stats_sampled(self, step: int) -> bool:
        """Whether step ``step`` (counted from 1) records tensor statistics."""
        every = (self.dense if step <= self._dense_until else self.strides).stats_every
        return every > 0 and (step - 1) % every == 0

    def activations_sampled(self, step: int) -> bool:
        """Whether the forward of step ``step`` records activation statistics."""
        every = (self.dense if step <= self._dense_until else self.strides).activations_every
        return every > 0 and (step - 1) % every == 0

    def burst(self, step: int) -> Strides | None:
        """Record densely from ``step`` for ``BURST_STEPS`` steps; the dense strides, or
        None when ``step`` was in a dense stretch already (which this extends)."""
        was_dense = step <= self._dense_until
        self._dense_until = max(self._dense_until, step + BURST_STEPS - 1)
        self._decided = False
        return None if was_dense else self.dense

    @property
    def dense_until(self) -> int:
        return self._dense_until

    def observe(
        self,
        step: int,
        *,
        step_seconds: float | None,
        stats_seconds: float | None = None,
        activations_seconds: float | None = None,
        fixed_seconds: float | None = None,
    ) -> Strides | None:
        """Account for one finished step; the strides from the next step on when they
        are newly decided, else None.

        ``step_seconds`` is the step's wall time without any of the collector's own
        work (None when the step was not timed); the costs are the collector's time for
        the sampled statistics of that step (None when the step did not sample them);
        ``fixed_seconds`` is the rest of the collector's time in that step.
        """
        if step_seconds is not None and step_seconds > 0:
            self._step_time = _ema(self._step_time, step_seconds, _EMA_STEP)
        if fixed_seconds is not None and fixed_seconds >= 0:
            self._fixed_cost = _ema(self._fixed_cost, fixed_seconds, _EMA_STEP)
        measured = False
        if stats_seconds is not None:
            self._seen["stats"] += 1
            if self._seen["stats"] > 1:  # the first holds warm-up costs
                self._stats_cost = _ema(self._stats_cost, stats_seconds)
                measured = True
        if activations_seconds is not None:
            self._seen["activations"] += 1
            if self._seen["activations"] > 1:
                self._activations_cost = _ema(self._activations_cost, activations_seconds)
                measured = True
        if step < self._dense_until or self._step_time is None:
            return None
        if self._stats_cost is None and self._activations_cost is None:
            return None
        if self.fixed_stats_every is not None and self.fixed_activations_every is not None:
            return None  # nothing adapts
        if self._decided and not measured:
            return None
        costs = (self._stats_cost or 0.0, self._activations_cost or 0.0, self._step_time)
        need, aim = self.stride_for(*costs), self.stride_for(*costs, share=AIM)
        first = not self._decided
        self._decided = True
        if first or need > self._stride or aim < (1 - HYSTERESIS) * self._stride:
            self._stride = aim  # >= need: the margin
            self.strides = self._strides_of(aim)
            return self.strides
        return None

    def stride_for(
        self, stats_cost: float, activations_cost: float, step_time: float, *, share: float = 1.0
    ) -> int:
        """The smallest stride that keeps the amortised cost within ``share`` of the budget."""
        budget = share * self.budget * step_time
        room = budget - (self._fixed_cost or 0.0)
        per_round = 0.0
        for cost, fixed, ratio in (
            (stats_cost, self.fixed_stats_every, 1),
            (activations_cost, self.fixed_activations_every, ACTIVATION_RATIO),
        ):
            if fixed is None:
                per_round += cost / ratio
            elif fixed > 0:
                room -= cost / fixed
        room = max(room, budget * FLOOR)
        stride = math.ceil(per_round / room - 1e-9)
        return min(max(stride, 1), MAX_STRIDE)

    @property
    def measured(self) -> dict[str, float | None]:
        """The smoothed measurements behind the strides, in milliseconds."""
        return {
            "stats_ms": _ms(self._stats_cost),
            "activations_ms": _ms(self._activations_cost),
            "step_ms": _ms(self._step_time),
            "fixed_ms": _ms(self._fixed_cost),
        }


class Overhead:
    """The collector's own seconds inside the step being timed, as the budget needs them.

    ``stats_s`` and ``activations_s``: on sampled statistics (the budget's costs);
    ``own_s``: the rest of the collector's time (all three are subtracted from the
    step time: the budget compares costs with the training's own time); ``fixed_s``:
    the part of ``own_s`` paid on every step, sampled or not (the budget's fixed
    cost). The hooks add what they measure; the step's end reads the totals and opens
    the next step's window.
    """

    __slots__ = ("activations_s", "fixed_s", "own_s", "stats_s")

    def __init__(self) -> None:
        self.stats_s = 0.0
        self.activations_s = 0.0
        self.own_s = 0.0
        self.fixed_s = 0.0

    def every_step(self, seconds: float) -> None:
        """Time the collector pays on every step (its hooks, ``log()``)."""
        self.own_s += seconds
        self.fixed_s += seconds

    def stats(self, seconds: float) -> None:
        """Time spent on sampled tensor statistics."""
        self.stats_s += seconds

    def activations(self, seconds: float) -> None:
        """Time spent on sampled activation statistics (and samples)."""
        self.activations_s += seconds

    def training_seconds(self, step_time_s: float, check_s: float) -> float:
        """The step's time less all of the collector's (``check_s``: the NaN check's)."""
        return step_time_s - (self.own_s + self.stats_s + self.activations_s + check_s)

    def next_step(self, carried_s: float, sampled_s: float) -> None:
        """Open the next step's window with ``carried_s`` of the collector's time already
        in it (the rest of the step-end hook), ``sampled_s`` of which was sampled."""
        self.stats_s = self.activations_s = 0.0
        self.own_s = carried_s
        self.fixed_s = carried_s - sampled_s


class LossWatch:
    """Says when a training loss misbehaves: the first non-finite value, or a jump.

    A jump is a value above ``JUMP`` times the running level, the level plus ``SPREAD``
    running deviations (exponential moving averages of the value and of its absolute
    deviation, after ``warmup`` values) and the level plus ``JUMP_FLOOR`` times the
    highest level seen: the ratio alone fires on the batch noise of a loss near zero,
    the deviations alone on a loss that is merely noisy (the same median + k sigma idea
    as the ``loss_spike`` rule), and both on the rare hard batch of a converged loss.
    Plain floats: the collector has them on the host already (``log()`` moves tensors
    in one transfer).
    """

    def __init__(self, *, warmup: int = 10, alpha: float = 0.1) -> None:
        self.warmup = warmup
        self.alpha = alpha
        self._level: float | None = None
        self._spread = 0.0
        self._peak = 0.0  # the highest running level
        self._count = 0
        self._nonfinite_seen = False

    def update(self, value: float) -> str | None:
        """The reason to go dense (``"loss jumped"``, ``"loss non-finite"``), or None."""
        if not math.isfinite(value):
            if self._nonfinite_seen:
                return None
            self._nonfinite_seen = True
            return "loss non-finite"
        self._count += 1
        level, spread = self._level, self._spread
        if level is None:
            self._level = self._peak = value
            return None
        jumped = (
            self._count > self.warmup
            and value > JUMP * abs(level)
            and value > level + SPREAD * spread
            and value > level + JUMP_FLOOR * abs(self._peak)
        )
        a = self.alpha
        self._level = (1 - a) * level + a * value
        self._peak = max(self._peak, self._level)
        self._spread = (1 - a) * spread + a * abs(value - level)
        return "loss jumped" if jumped else None


def _ema(old: float | None, new: float, weight: float = _EMA) -> float:
    return new if old is None else (1 - weight) * old + weight * new


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3
