"""The overhead budget: how often to sample statistics so that they cost a set share.

Tensor statistics (per-parameter grad/weight/update) and activation statistics cost
a roughly fixed time per sampled step, which is large for big models on a CPU (one
pass over every weight, gradient and the previous weights) and tiny elsewhere. The
collector measures that cost and the step time, and this controller turns them into
strides::

    share = (stats_cost / stats_every + activations_cost / activations_every) / step_time

is kept at or under ``budget``, with activations sampled ``ACTIVATION_RATIO`` times
less often than tensor statistics, and never more often than every step.

The first ``dense_steps`` steps are always recorded densely (initialisation problems
show there: dead units, vanishing gradients at step 1): tensor statistics every step,
activations every ``DENSE_ACTIVATIONS_EVERY`` steps. After that the strides follow the
measured costs (exponential moving averages): a stride widens as soon as the budget
is exceeded, and narrows only when it could shrink by more than ``HYSTERESIS``, so
that noise does not make it flap.

Pure bookkeeping: no torch, no clock; the collector passes the measured seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACTIVATION_RATIO = 4
"""Activations are sampled this many times less often than tensor statistics."""

DENSE_ACTIVATIONS_EVERY = 5
"""Activation sampling stride during the dense start."""

HYSTERESIS = 0.25
"""A narrower stride is taken only when it is this fraction below the current one."""

MAX_STRIDE = 10_000

_EMA = 0.2  # weight of the newest measurement


@dataclass(frozen=True)
class Strides:
    stats_every: int
    activations_every: int


class OverheadBudget:
    """Chooses sampling strides from measured costs (see the module docstring)."""

    def __init__(self, budget: float, *, dense_steps: int = 20) -> None:
        if not (0 < budget < 1):
            raise ValueError(f"overhead budget must be a fraction in (0, 1), got {budget!r}")
        self.budget = budget
        self.dense_steps = dense_steps
        self._stride = 1
        self._stats_cost: float | None = None
        self._activations_cost: float | None = None
        self._step_time: float | None = None

    @property
    def strides(self) -> Strides:
        """The strides to use now (dense during the first steps)."""
        return Strides(self._stride, self._stride * ACTIVATION_RATIO)

    def stats_sampled(self, step: int) -> bool:
        """Whether step ``step`` (counted from 1) records tensor statistics."""
        if step <= self.dense_steps:
            return True
        return (step - 1) % self._stride == 0

    def activations_sampled(self, step: int) -> bool:
        """Whether the forward of step ``step`` records activation statistics."""
        if step <= self.dense_steps:
            return (step - 1) % DENSE_ACTIVATIONS_EVERY == 0
        return (step - 1) % (self._stride * ACTIVATION_RATIO) == 0

    def observe(
        self,
        step: int,
        *,
        step_seconds: float | None,
        stats_seconds: float | None = None,
        activations_seconds: float | None = None,
    ) -> Strides | None:
        """Account for one finished step; the new strides when they changed, else None.

        ``step_seconds`` is the step's wall time including the collector's own work
        (None when the step was not timed); the costs are the collector's time for the
        sampled statistics of that step (None when the step did not sample them).
        """
        collector = (stats_seconds or 0.0) + (activations_seconds or 0.0)
        if step_seconds is not None and step_seconds > 0:
            self._step_time = _ema(self._step_time, max(step_seconds - collector, 1e-9))
        if stats_seconds is not None:
            self._stats_cost = _ema(self._stats_cost, stats_seconds)
        if activations_seconds is not None:
            self._activations_cost = _ema(self._activations_cost, activations_seconds)
        if step < self.dense_steps or self._step_time is None or self._stats_cost is None:
            return None
        wanted = self.stride_for(self._stats_cost, self._activations_cost or 0.0, self._step_time)
        # Over budget: widen at once. Under it: narrow only past the hysteresis band.
        first = step == self.dense_steps
        if first or wanted > self._stride or wanted < (1 - HYSTERESIS) * self._stride:
            changed = wanted != self._stride
            self._stride = wanted
            if changed or first:
                return self.strides
        return None

    def stride_for(self, stats_cost: float, activations_cost: float, step_time: float) -> int:
        """The smallest stride that keeps the amortised cost within the budget."""
        per_round = stats_cost + activations_cost / ACTIVATION_RATIO
        stride = math.ceil(per_round / (self.budget * step_time) - 1e-9)
        return min(max(stride, 1), MAX_STRIDE)

    @property
    def measured(self) -> dict[str, float | None]:
        """The smoothed measurements behind the strides, in milliseconds."""
        return {
            "stats_ms": _ms(self._stats_cost),
            "activations_ms": _ms(self._activations_cost),
            "step_ms": _ms(self._step_time),
        }


def _ema(old: float | None, new: float) -> float:
    return new if old is None else (1 - _EMA) * old + _EMA * new


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3
