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
from collector.samples import SampleWatcher
from collector.system import StepTimer, SystemRows
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
        self._lr_columns: dict[str, list[str]] = {}
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
        self._activations = ActivationWatcher(
            self._leaves,
            every=budget.activations_sampled if activations_every is None else activations_every,
            nan_check_every=int(nan_check),
        )
        self._inputs = InputWatcher()
        self._samples = SampleWatcher(
            self._leaves, every=samples_every, budget_bytes=samples_budget_bytes
        )
        self._nan_check = int(nan_check)
        # The optimizer's parameters only: a trainable parameter it does not hold keeps
        # its gradient across zero_grad() by design and is not what it steps with.
        self._gradients = (
            GradientWatch([p for _, p in watched if id(p) in _held_by(optimizer)])
            if optimizer is not None
            else None
        )
        self._modes = ModeWatch(model) if model is not None else None
        self.device = watched[0][1].device if watched else torch.device("cpu")
        """Where the watched parameters live (the first one's device)."""
        self._system = SystemRows(out, self._gradients, self.device)
        self._summary = ModelSummary(model) if model is not None else None
        self._summary_written = model is None
        self._forwards: OutermostForwards | None = None

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
            if self._nan_check:
                checked = [(n, m) for n, m in self._leaves if can_create_nonfinite(m)]
                for name, module in checked + self._composites:
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

    def read_pending_system(self) -> None:
        """Write the ``system`` rows whose gradient norms still wait on the device."""
        self._system.read_pending()

    def record_last_origin(self) -> None:
        """Look for a NaN origin in the last steps, not read yet (at close)."""
        self._record_origin(self._activations.find_origin())

    def origin_now(self, step: int) -> tuple[int, dict[str, Any]] | None:
        """The NaN origin up to ``step`` (the step in progress included), read now and
        recorded if it was not yet; None when no module output was non-finite."""
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

    def _on_forward_start(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        start = time.perf_counter()
        first = args[0] if args else None
        batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else None
        grad_enabled = torch.is_grad_enabled()
        training = module.training and grad_enabled
        continues = self._timer.on_forward_start(
            module, training=training, batch_size=batch, whole=module is self._model
        )
        if not grad_enabled and self._modes is not None and self._modes.active:
            found = self._modes.on_forward(self._out.step)
            if found is not None:
                self._out.event(EventKind.EVAL_IN_TRAINING_MODE, found)
        # The rest of the step's first pass (``head`` after ``encoder``) is sampled and
        # checked as the first forward decided, with the leaf hooks it added.
        if not continues:
            step = self._out.step + 1  # the forward belongs to the step in progress
            self._activations.on_forward_start(step, training=training, first_input=first)
            if training:
                sampled = self._activations.sampling or step == 1
                self._inputs.on_forward_start(first, sampled=sampled)
            self._samples.on_forward_start(step, training=training)
            sampled = self._activations.sampling or self._samples.sampling
            if sampled and not len(self._sample_hooks):
                g = self._guard
                for name, leaf in self._leaves:
                    out = guarded(g, "forward_output")(
                        functools.partial(self._on_sampled_output, name)
                    )
                    self._sample_hooks.add(leaf.register_forward_hook(out))
        self._overhead.every_step(time.perf_counter() - start)

    def _on_sampled_output(
        self, name: str, module: torch.nn.Module, args: tuple[Any, ...], output: Any
    ) -> None:
        start = time.perf_counter()
        self._activations.on_sampled_output(name, module, output)
        self._samples.on_output(name, output)
        self._overhead.activations(time.perf_counter() - start)

    def _on_before_optimizer_step(self) -> None:
        start = time.perf_counter()
        if self._gradients is not None:
            self._gradients.on_before_optimizer_step()
            if self._on_gradients is not None:  # the NaN guard (collector.stopping)
                self._on_gradients(self._gradients.at_step, self._out.step + 1)
        sampled_start = time.perf_counter()
        self._params.on_before_optimizer_step(self._out.step + 1)
        end = time.perf_counter()
        self._overhead.stats(end - sampled_start)
        self._overhead.every_step(sampled_start - start)

    def _on_after_optimizer_step(self) -> None:
        out, overhead = self._out, self._overhead
        out.step += 1
        if self._forwards is not None:
            self._forwards.step_ended()
        examples = self._timer.examples or None
        timing = self._timer.on_after_optimizer_step()
        hook_start = time.perf_counter()
        # The plain rows first: a failing statistic (the guard stops the hook there)
        # must not cost the step its learning rate and timing.
        assert self._optimizer is not None  # only registered with an optimizer
        groups = self._optimizer.param_groups
        lrs = [float(g["lr"]) if "lr" in g else math.nan for g in groups]
        out.put(Stream.SCALARS, self._lr_labels(len(groups)) | {"value": lrs})
        self._system.row(timing, examples)
        start = time.perf_counter()
        tensors = self._params.on_after_optimizer_step()
        if tensors is not None:
            out.put(Stream.TENSORS, tensors)
            # The statistics synchronised already: what waits on the device costs no wait.
            self._on_synchronised()
            self._system.read_pending()
        sampled_in_hook = time.perf_counter() - start
        stats_s = overhead.stats_s + sampled_in_hook if tensors is not None else None
        if len(self._sample_hooks):
            self._sample_hooks.remove()  # leaf hooks live for one sampled step only
        start = time.perf_counter()
        activations, origin = self._activations.on_after_optimizer_step(out.step)
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
        if self.budget is not None:
            check_s = self._activations.take_check_seconds()
            training_s = None
            if timing is not None and timing["step_time_s"] is not None:
                training_s = overhead.training_seconds(timing["step_time_s"], check_s)
            strides = self.budget.observe(
                out.step,
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
        overhead.next_step(time.perf_counter() - hook_start, sampled_in_hook)
        self._timer.hooks_done()

    # -- helpers ---------------------------------------------------------------------------

    def _lr_labels(self, groups: int) -> dict[str, list[str]]:
        """The ``name`` and ``split`` columns of the learning-rate rows (made once; the
        writer copies what it is given)."""
        if len(self._lr_columns.get("name", ())) != groups:
            names = ["lr" if i == 0 else f"lr.group{i}" for i in range(groups)]
            self._lr_columns = {"name": names, "split": ["train"] * groups}
        return self._lr_columns

    def _record_origin(self, origin: tuple[int, dict[str, Any]] | None) -> None:
        if origin is not None:
            step, found = origin
            self._out.event(EventKind.NONFINITE_ORIGIN, found, step=step)


def _held_by(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}
