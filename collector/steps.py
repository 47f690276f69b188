"""The step hooks: what a collector does inside the training step.

``StepHooks`` owns every watcher that hooks the model and the optimizer (parameter
statistics, activations, samples, gradient norms, modes, the model summary), the
overhead budget that samples them, and the hooks themselves:

* the pre-hook of the model's outermost forwards (``collector.hooks.OutermostForwards``:
  the model's own, or the children's a loop calls directly): step timing, batch size,
  evaluation forwards, and the leaf-module output hooks of a sampled step;
* the optimizer's pre-step hook: gradient and parameter statistics before the update;
* the optimizer's post-step hook: the step counts (``Output.step`` + 1), then the
  learning rates, the ``system`` row, the sampled statistics, the NaN origin, the
  model summary, and the budget's decision on the next strides.

Every hook is wrapped by ``collector.guard`` (it never raises into training) and
measures its own time into one ``budget.Overhead``; ``log()`` adds to it too.

Most steps sample nothing: the forward pre-hook then only times the step (and holds
its inputs for the NaN check's replay, ``collector.replay``), and the post-step hook
appends one entry to ``collector.steprows``. Whether a step samples anything is
decided once, at its first forward (``_plan``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from collector import payload
from collector.activations import (
    ActivationWatcher,
    can_create_nonfinite,
    leaf_modules,
    own_code_modules,
)
from collector.budget import DENSE_STEPS, LossWatch, Overhead, OverheadBudget
from collector.distributed import Placement, param_stats_every
from collector.gradients import GradientWatch
from collector.guard import GuardCounters, guarded
from collector.hooks import HookSet, OutermostForwards
from collector.inputs import InputWatcher
from collector.modes import ModeWatch
from collector.modules import ModelSummary
from collector.output import Output
from collector.params import ParamWatcher
from collector.replay import HeldForwards
from collector.samples import SampleWatcher
from collector.steprows import StepRows
from collector.system import StepTimer
from store.schema import EventKind, Stream


class StepHooks:
    """The hooks of one collector on its model and optimizer, and what they record.

    ``on_synchronised`` is called when a sampled step has synchronised the device
    anyway (the collector then reads the ``log()`` values waiting there).
    """

    def __init__(
        self,
        out: Output,
        overhead: Overhead,
        *,
        model: torch.nn.Module | None,
        optimizer: torch.optim.Optimizer | None,
        watched: list[tuple[str, torch.nn.Parameter]],
        placement: Placement,
        stats_every: int | None,
        activations_every: int | None,
        samples_every: int,
        samples_budget_bytes: int,
        module_include: Sequence[str] | None,
        module_exclude: Sequence[str] | None,
        nan_check: int,
        overhead_budget: float,
        on_synchronised: Callable[[], object],
        on_gradients: Callable[[torch.Tensor | None, int], object] | None = None,
    ) -> None:
        self._out = out
        self._overhead = overhead
        self._model = model
        self._optimizer = optimizer
        self._on_synchronised = on_synchronised
        self._on_gradients = on_gradients
        self._hooks = HookSet()
        self._sample_hooks = HookSet()
        self._guard = GuardCounters()
        self._timer = StepTimer()
        # A stride left None is the budget's to choose; with both given it stays idle.
        budget = OverheadBudget(
            overhead_budget,
            dense_steps=DENSE_STEPS,
            stats_every=stats_every,
            activations_every=activations_every,
        )
        adaptive = stats_every is None or activations_every is None
        self.budget = budget if adaptive else None
        """The overhead budget choosing the strides left None (None: both were given)."""
        self._loss_watch = LossWatch()
        every = budget.stats_sampled if stats_every is None else stats_every
        self._params = ParamWatcher(watched, every=param_stats_every(placement, every))
        self._leaves = (
            leaf_modules(model, include=module_include, exclude=module_exclude)
            if model is not None
            else []
        )
        self._composites = (
            own_code_modules(model, include=module_include, exclude=module_exclude)
            if model is not None
            else []
        )
        self.device = watched[0][1].device if watched else torch.device("cpu")
        """Where the watched parameters live (the first one's device)."""
        self.rows = StepRows(out.writer, self.device)
        """Every step's ``system`` and learning-rate rows, and ``log()``'s, until handed over."""
        # The NaN origin by replay where the gradient norm is on the host for free
        # (collector.replay); else the check hooks on every (nan_check-th) step.
        replay = (
            nan_check == 1
            and model is not None
            and optimizer is not None
            and not placement.group
            and (self.device.type == "cpu" or on_gradients is not None)
        )
        self._held = HeldForwards(model, self.device) if replay and model is not None else None
        self._activations = ActivationWatcher(
            self._leaves,
            every=budget.activations_sampled if activations_every is None else activations_every,
            nan_check_every=0 if replay else int(nan_check),
        )
        self._checked_modules = [
            (n, m) for n, m in self._leaves if can_create_nonfinite(m)
        ] + self._composites
        self._inputs = InputWatcher()
        self._samples = SampleWatcher(
            self._leaves, every=samples_every, budget_bytes=samples_budget_bytes
        )
        self._nan_check = int(nan_check)
        # The optimizer's parameters only: a trainable parameter it does not hold keeps
        # its gradient across zero_grad() by design and is not what it steps with.
        self._gradients = (
            GradientWatch([p for _, p in watched if id(p) in _held_by(optimizer)], overhead)
            if optimizer is not None
            else None
        )
        self._modes = ModeWatch(model) if model is not None else None
        self._summary = ModelSummary(model) if model is not None else None
        self._summary_written = model is None
        self._forwards: OutermostForwards | None = None
        self._planned_step = -1  # the step whose forward _plan decided
        self._replayed = -1  # the last step whose forwards were replayed
        self._full = True  # whether that step samples or checks anything

    # -- for the collector ---------------------------------------------------------------

    def attach(self) -> None:
        """Register every hook on the model and the optimizer."""
        g = self._guard
        if self._optimizer is not None:
            pre = guarded(g, "optimizer_step_pre")(self._on_before_optimizer_step)
            post = guarded(g, "optimizer_step_post")(self._on_after_optimizer_step)
            self._hooks.add(self._optimizer.register_step_pre_hook(lambda *a, **k: pre()))
            self._hooks.add(self._optimizer.register_step_post_hook(lambda *a, **k: post()))
            handle = self._params.attach()
            if handle is not None:
                self._hooks.add(handle)
            if self._gradients is not None:
                for handle in self._gradients.attach():
                    self._hooks.add(handle)
        if self._model is not None:
            gradients = self._gradients
            self._forwards = OutermostForwards(
                self._model,
                on_start=guarded(g, "forward_pre")(self._on_forward_start),
                on_end=guarded(g, "forward_end")(gradients.on_forward_end)
                if gradients is not None and gradients.trainable
                else None,
                settle_on_repeat=self._optimizer is None,  # no step_ended() to settle
            )
            self._forwards.attach()
            if self._nan_check and self._held is None:
                for name, module in self._checked_modules:
                    check = self._activations.check_hook(name, module, g.failures)
                    self._hooks.add(module.register_forward_hook(check))
        if self._summary is not None:
            self._summary.attach(lambda name: guarded(g, name))

    def remove_hooks(self) -> None:
        """Take every hook off (idempotent): the model and optimizer as they were."""
        self._hooks.remove()
        self._sample_hooks.remove()
        if self._forwards is not None:
            self._forwards.remove()

    def sampling_start(self) -> dict[str, Any]:
        """How statistics are sampled from the start (``run_started``'s ``sampling``)."""
        return payload.sampling_start(
            self.budget,
            stats_every=self._params.every,
            activations_every=self._activations.every,
        )

    def record_last_origin(self) -> None:
        """Look for a NaN origin in the last steps, not read yet (at close)."""
        self._record_origin(self._activations.find_origin())

    def origin_now(self, step: int) -> tuple[int, dict[str, Any]] | None:
        """The NaN origin up to ``step`` (the step in progress included), read now and
        recorded if it was not yet; None when no module output was non-finite."""
        if self._held is not None:
            if self._activations.found is None and step == self._out.step + 1:
                self._replay(step)  # the step in progress, its weights not updated yet
            return self._activations.found
        found, new = self._activations.origin_now(step)
        if new:
            self._record_origin(found)
        return found

    def health(self) -> dict[str, Any]:
        """Hook failures and inference forwards, for the run's final event."""
        health: dict[str, Any] = {"hook_failures": dict(self._guard.failures)}
        if self._modes is not None and self._modes.active:
            health["inference_forwards"] = self._modes.summary()
        return health

    def watch_loss(self, names: list[str], splits: list[str | None], values: list[float]) -> None:
        """A misbehaving training loss makes the next steps dense (``collector.budget``)."""
        budget = self.budget
        assert budget is not None
        for name, split, value in zip(names, splits, values, strict=True):
            if name != "loss" or split not in (None, "train"):
                continue
            reason = self._loss_watch.update(value)
            strides = budget.burst(self._out.step + 1) if reason else None
            if strides is not None and reason is not None:
                change = payload.sampling_change(budget, strides, reason)
                change |= {"until": budget.dense_until}
                self._out.event(EventKind.SAMPLING, change, essential=False)

    def write_summary(self) -> None:
        """The ``modules`` rows, once (after the first training forward, or at close)."""
        if self._summary is None or self._summary_written:
            return
        self._summary_written = True
        self._summary.detach()
        self._activations.pre_relu = frozenset(self._summary.feeds)
        self._out.put(Stream.MODULES, self._summary.rows())

    # -- the hooks -------------------------------------------------------------------------

    def _on_forward_start(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        held = self._held
        if held is not None and held.replaying:
            return
        start = time.perf_counter()
        first = args[0] if args else None
        batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else None
        grad_enabled = torch.is_grad_enabled()
        training = module.training and grad_enabled
        continues = self._timer.on_forward_start(
            module, training=training, batch_size=batch, whole=module is self._model
        )
        if training and held is not None:
            held.hold(module, args, kwargs)
        if not grad_enabled and self._modes is not None and self._modes.active:
            found = self._modes.on_forward(self._out.step)
            if found is not None:
                self._out.event(EventKind.EVAL_IN_TRAINING_MODE, found)
        # The rest of the step's first pass (``head`` after ``encoder``) is sampled and
        # checked as the first forward decided, with the leaf hooks it added.
        if not continues:
            step = self._out.step + 1  # the forward belongs to the step in progress
            if step != self._planned_step:
                self._planned_step = step
                self._full = self._plan(step)
            if self._full:
                self._on_sampled_forward_start(step, training, first)
        self._overhead.every_step(time.perf_counter() - start)

    def _plan(self, step: int) -> bool:
        """Whether the forward of ``step`` samples or checks anything (else the hooks take
        their short path for the whole step)."""
        return (
            step == 1
            or self._activations.sampled(step)
            or self._activations.checked(step)
            or self._samples.sampled(step)
        )

    def _on_sampled_forward_start(self, step: int, training: bool, first: Any) -> None:
        self._activations.on_forward_start(step, training=training, first_input=first)
        if training:
            sampled = self._activations.sampling or step == 1
            self._inputs.on_forward_start(first, sampled=sampled)
        self._samples.on_forward_start(step, training=training)
        sampled = self._activations.sampling or self._samples.sampling
        if sampled and not len(self._sample_hooks):
            g = self._guard
            for name, leaf in self._leaves:
                out = guarded(g, "forward_output")(functools.partial(self._on_sampled_output, name))
                self._sample_hooks.add(leaf.register_forward_hook(out))

    def _on_sampled_output(
        self, name: str, module: torch.nn.Module, args: tuple[Any, ...], output: Any
    ) -> None:
        if self._held is not None and self._held.replaying:
            return
        start = time.perf_counter()
        self._activations.on_sampled_output(name, module, output)
        self._samples.on_output(name, output)
        self._overhead.activations(time.perf_counter() - start)

    def _on_before_optimizer_step(self) -> None:
        start = time.perf_counter()
        step = self._out.step + 1
        gradients = self._gradients
        if gradients is not None:
            gradients.on_before_optimizer_step()
            norm = gradients.at_step
            held = self._held
            if (
                held is not None
                and norm is not None
                and self._activations.found is None
                # a read of memory on the CPU (or the guard's own synchronisation, below)
                and not math.isfinite(norm.item())
            ):
                self._replay(step)
            if self._on_gradients is not None:  # the NaN guard (collector.stopping)
                self._on_gradients(norm, step)
        sampled_start = time.perf_counter()
        self._params.on_before_optimizer_step(step)
        end = time.perf_counter()
        self._overhead.stats(end - sampled_start)
        self._overhead.every_step(sampled_start - start)

    def _on_after_optimizer_step(self) -> None:
        out, overhead = self._out, self._overhead
        out.step += 1
        step = out.step
        if self._forwards is not None:
            self._forwards.step_ended()
        examples = self._timer.examples or None
        timing = self._timer.on_after_optimizer_step()
        hook_start = time.perf_counter()
        # The plain rows first: a failing statistic (the guard stops the hook there)
        # must not cost the step its learning rate and timing.
        assert self._optimizer is not None  # only registered with an optimizer
        lrs = [float(g["lr"]) if "lr" in g else math.nan for g in self._optimizer.param_groups]
        gradients = self._gradients.on_after_optimizer_step() if self._gradients else None
        self.rows.step(step, out.epoch, timing, examples, gradients, lrs)
        if self._held is not None:
            self._held.clear()
            if self._gradients is not None and self._gradients.closure_seen:
                self._check_every_forward()
        sampled_in_hook = stats_s = activations_s = None
        if self._full or self._params.pending or not self._summary_written:
            sampled_in_hook, stats_s, activations_s = self._after_sampled_step(step)
        if self.budget is not None:
            check_s = self._activations.take_check_seconds()
            training_s = None
            if timing is not None:
                training_s = overhead.training_seconds(timing[0], check_s)
            strides = self.budget.observe(
                step,
                step_seconds=training_s,
                stats_seconds=stats_s,
                activations_seconds=activations_s,
                fixed_seconds=overhead.fixed_s + check_s,
            )
            if strides is not None:
                change = payload.sampling_change(self.budget, strides, "budget")
                out.event(EventKind.SAMPLING, change, essential=False)
        # The rest of this hook falls in the next step's timing window: all of it is the
        # collector's, and what was not sampled statistics is paid on every step.
        end = time.perf_counter()
        overhead.next_step(end - hook_start, sampled_in_hook or 0.0)
        self._timer.hooks_done(end)

    def _after_sampled_step(self, step: int) -> tuple[float, float | None, float | None]:
        """What a step that sampled or checked anything records after it: (seconds of
        sampled work in the hook, the statistics' cost, the activations' cost)."""
        out, overhead = self._out, self._overhead
        self._full = False  # until the next step's plan
        start = time.perf_counter()
        tensors = self._params.on_after_optimizer_step()
        if tensors is not None:
            out.put(Stream.TENSORS, tensors)
            # The statistics synchronised already: what waits on the device costs no wait.
            self._on_synchronised()
            self.rows.synchronised()
        sampled_in_hook = time.perf_counter() - start
        stats_s = overhead.stats_s + sampled_in_hook if tensors is not None else None
        if len(self._sample_hooks):
            self._sample_hooks.remove()  # leaf hooks live for one sampled step only
        start = time.perf_counter()
        activations, origin = self._activations.on_after_optimizer_step(step)
        if activations is not None:
            out.put(Stream.ACTIVATIONS, activations)
        elapsed = time.perf_counter() - start
        sampled_in_hook += elapsed
        activations_s = overhead.activations_s + elapsed if activations is not None else None
        self._record_origin(origin)
        inputs = self._inputs.on_after_optimizer_step()
        if inputs is not None:
            out.put(Stream.INPUTS, inputs)
        samples = self._samples.on_after_optimizer_step()
        if samples is not None:
            out.put(Stream.SAMPLES, samples)
        if self._summary is not None and self._summary.step_ended():
            self.write_summary()
        return sampled_in_hook, stats_s, activations_s

    def _check_every_forward(self) -> None:
        """The loop runs its forward inside ``optimizer.step(closure)`` (Lightning,
        LBFGS): the pre-step hook comes before that forward, too early to replay it.
        Check every step's forward instead, from the next step on."""
        self._held = None
        self._activations.nan_check_every = 1
        for name, module in self._checked_modules:
            check = self._activations.check_hook(name, module, self._guard.failures)
            self._hooks.add(module.register_forward_hook(check))

    def _replay(self, step: int) -> None:
        """Run the step's held forwards again with the NaN check's hooks on
        (``collector.replay``); record the origin they show."""
        held = self._held
        if held is None or not held.can_replay or self._replayed == step:
            return
        self._replayed = step  # once a step (the guard may ask again for the same one)
        hooks = HookSet()
        activations = self._activations
        try:
            for name, module in self._checked_modules:
                check = activations.check_hook(name, module, self._guard.failures)
                hooks.add(module.register_forward_hook(check))
            activations.begin_check()
            held.replay(before=activations.check_input)
        finally:
            hooks.remove()
            self._activations.take_check_seconds()  # not the step's cost: a broken step
        self._record_origin(activations.end_check(step))

    # -- helpers ---------------------------------------------------------------------------

    def _record_origin(self, origin: tuple[int, dict[str, Any]] | None) -> None:
        if origin is not None:
            step, found = origin
            self._out.event(EventKind.NONFINITE_ORIGIN, found, step=step)


def _held_by(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}
