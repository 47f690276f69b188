"""When the training loop should stop: the NaN guard and early stopping.

Both only decide; the loop acts (``tel.should_stop``), except the guard's ``"raise"``,
which raises ``NonFiniteError`` itself. Each decision is recorded as an event
(``stop``, ``best``) by the collector.

**NaN guard** (``Collector(on_nonfinite=...)``). Under ``"warn"`` (the default) it does
nothing: the non-finite origin is found as always, in batches, with no host
synchronisation per step. Under ``"stop"`` or ``"raise"`` every step reads two numbers
on the host: the training loss given to ``log()`` (a metric of the ``train`` split, or
of none, whose name contains ``loss``) and the global gradient norm the optimizer's
pre-step hook computes anyway. That read is one synchronisation per step on an
accelerator (the price of stopping within one step); on the CPU it is a memory read.
The first non-finite one trips the guard once: the non-finite origin is looked up now
(``ActivationWatcher.origin_now``), the store is flushed, then ``should_stop`` turns
True (``"stop"``) or ``NonFiniteError`` is raised (``"raise"``): from ``log()`` for a
loss, from ``optimizer.step()`` (its pre-step hook, before the update) for a gradient.

**Early stopping** (``tel.early_stopping(metric="loss/val", patience=5, ...)``). Each
logged value of the metric is one evaluation. It improves on the best so far when it
is lower by more than ``min_delta`` (``mode="min"``; higher for ``"max"``); ``is_best``
is True right after an improving value (save the checkpoint then), and
``should_stop`` turns True once ``patience`` evaluations in a row did not improve. A
non-finite value never improves. The first value is always the best so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collector.arguments import shown
from collector.output import Output
from store.errors import ConfigError, NonFiniteError
from store.schema import ORIGIN_INPUT, EventKind

if TYPE_CHECKING:
    import torch

ON_NONFINITE = ("warn", "stop", "raise")
MODES = ("min", "max")


def check_on_nonfinite(value: object) -> str:
    if value not in ON_NONFINITE:
        raise ConfigError(f"on_nonfinite must be one of {list(ON_NONFINITE)}, got {shown(value)}")
    return str(value)


def is_training_loss(name: str, split: str | None) -> bool:
    """Whether a logged metric is a training loss the guard watches."""
    return split in (None, "train") and "loss" in name.lower()


@dataclass
class Trip:
    """What tripped the guard: at ``step``, ``what`` ("loss" or "gradient") was ``value``."""

    step: int
    what: str
    name: str
    value: float
    origin: dict[str, Any] | None = None
    origin_step: int | None = None

    def payload(self, action: str) -> dict[str, Any]:
        return {
            "reason": "nonfinite",
            "action": action,
            "what": self.what,
            "name": self.name,
            "value": self.value,
            "origin": self.origin,
            "origin_step": self.origin_step,
        }

    def message(self) -> str:
        where = "no module output was non-finite before it (the gradients or the loss itself)"
        if self.origin is not None and self.origin.get("module") == ORIGIN_INPUT:
            where = f"the model's input was already non-finite at step {self.origin_step}"
        elif self.origin is not None:
            module = self.origin.get("module")
            kind = self.origin.get("module_type")
            at = self.origin_step
            where = f"the first non-finite output: module {module!r} ({kind}) at step {at}"
        what = (
            f"the training loss {self.name!r}"
            if self.what == "loss"
            else "the gradients' global norm"
        )
        return (
            f"step {self.step}: {what} is {self.value}; "
            f"{where}. Every row recorded before it is on disk (on_nonfinite='raise')."
        )


@dataclass(frozen=True)
class EarlyStoppingRule:
    """``metric`` (``name/split`` as given to ``log()``, or a bare name), ``patience``,
    ``min_delta`` and ``mode``, checked."""

    name: str
    split: str | None
    metric: str
    patience: int
    min_delta: float
    mode: str

    @staticmethod
    def of(metric: object, patience: object, min_delta: object, mode: object) -> EarlyStoppingRule:
        if not isinstance(metric, str) or not metric or metric.endswith("/"):
            raise ConfigError(
                f"early_stopping(metric=...) takes a metric as given to log(), e.g. "
                f"'loss/val', got {shown(metric)}"
            )
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(
                f"early_stopping(patience=...) must be an int >= 1, got {shown(patience)}"
            )
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, int | float)
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            raise ConfigError(
                "early_stopping(min_delta=...) must be a finite number >= 0, "
                f"got {shown(min_delta)}"
            )
        if mode not in MODES:
            raise ConfigError(f"early_stopping(mode=...) must be 'min' or 'max', got {shown(mode)}")
        name, _, split = metric.rpartition("/")
        if not name:
            name, split = metric, ""
        return EarlyStoppingRule(name, split or None, metric, patience, float(min_delta), str(mode))


class EarlyStopping:
    """The watcher ``tel.early_stopping()`` arms."""

    def __init__(self, rule: EarlyStoppingRule) -> None:
        self.rule = rule
        self.best: float | None = None
        self.best_step: int | None = None
        self.evaluations = 0
        self.since_best = 0
        self.is_best = False
        self.should_stop = False

    def observe(self, value: float, step: int) -> str | None:
        """Take one logged value; "best" when it is the best so far, "stop" when the
        patience just ran out, else None."""
        self.evaluations += 1
        r = self.rule
        improved = math.isfinite(value) and (
            self.best is None
            or (
                value < self.best - r.min_delta
                if r.mode == "min"
                else value > self.best + r.min_delta
            )
        )
        self.is_best = improved
        if improved:
            self.best, self.best_step, self.since_best = value, step, 0
            return "best"
        self.since_best += 1
        if self.since_best >= r.patience and not self.should_stop:
            self.should_stop = True
            return "stop"
        return None

    def payload(self) -> dict[str, Any]:
        r = self.rule
        return {
            "reason": "early_stopping",
            "metric": r.metric,
            "mode": r.mode,
            "patience": r.patience,
            "min_delta": r.min_delta,
            "best": self.best,
            "best_step": self.best_step,
            "evaluations": self.evaluations,
        }


class Stopping:
    """The collector's stopping state: its NaN guard and its early stopping (if armed).

    ``origin_now(step)`` finds the non-finite origin now (recording its event);
    ``flush()`` puts every row recorded so far on disk."""

    def __init__(
        self,
        out: Output,
        mode: str,
        *,
        origin_now: Callable[[int], tuple[int, dict[str, Any]] | None],
        flush: Callable[[], object],
    ) -> None:
        self.mode = mode
        self.guarding = mode != "warn"
        self.early: EarlyStopping | None = None
        self.tripped: Trip | None = None
        self._out = out
        self._origin_now = origin_now
        self._flush = flush
        self._raised = False
        self._stopped = False

    @property
    def watching(self) -> bool:
        """Whether logged values are looked at (the guard or early stopping is on)."""
        return self.guarding or self.early is not None

    @property
    def should_stop(self) -> bool:
        return self._stopped or (self.early is not None and self.early.should_stop)

    @property
    def is_best(self) -> bool:
        return self.early is not None and self.early.is_best

    def wants_now(self, names: list[str], splits: list[str | None]) -> bool:
        """Whether a ``log()`` call's device values must be read at once (not batched)."""
        if self.guarding and any(map(is_training_loss, names, splits)):
            return True
        early = self.early
        return early is not None and any(
            n == early.rule.name and s == early.rule.split
            for n, s in zip(names, splits, strict=True)
        )

    def on_logged(
        self, names: list[str], splits: list[str | None], values: list[float], step: int
    ) -> None:
        """A ``log()`` call's values, on the host and queued for the writer."""
        early = self.early
        for name, split, value in zip(names, splits, values, strict=True):
            if self.guarding and not math.isfinite(value) and is_training_loss(name, split):
                self.trip(Trip(step, "loss", name, value))
            if early is not None and name == early.rule.name and split == early.rule.split:
                decision = early.observe(value, step)
                if decision == "best":
                    event = {"metric": early.rule.metric, "value": value, "mode": early.rule.mode}
                    self._out.event(EventKind.BEST, event, step=step)
                elif decision == "stop":
                    self._out.event(EventKind.STOP, early.payload(), step=step)

    def on_gradients(self, norm: torch.Tensor | None, step: int) -> None:
        """The global gradient norm of the step about to be taken (pre-step hook)."""
        if norm is None or self.tripped is not None:
            return
        value = float(norm)  # the one synchronisation per step the guard costs
        if not math.isfinite(value):
            self.trip(Trip(step, "gradient", "grad_norm", value))
            self.raise_if_tripped()  # before the optimizer applies them

    def trip(self, trip: Trip) -> None:
        """The first non-finite value: its origin, an event, every row on disk."""
        if self.tripped is not None:
            return
        self.tripped = trip
        try:
            found = self._origin_now(trip.step)
        except Exception:  # a broken device: stop all the same, without an origin
            found = None
        if found is not None:
            trip.origin_step, trip.origin = found
        self._out.event(EventKind.STOP, trip.payload(self.mode), step=trip.step)
        self._stopped = self.mode == "stop"
        self._flush()

    def raise_if_tripped(self) -> None:
        """Under ``"raise"``: ``NonFiniteError`` once, after the guard tripped."""
        if self.tripped is not None and self.mode == "raise" and not self._raised:
            self._raised = True
            raise NonFiniteError(self.tripped.message())
