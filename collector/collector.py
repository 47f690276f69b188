"""The Collector: what a training script attaches to its loop.

Example::

    from collector import Collector

    with Collector("runs", name="digits-cnn", config={"lr": 1e-3},
                   model=model, optimizer=optimizer) as tel:
        for epoch in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()              # hooks record grads, weights, updates, lr, timing
                tel.log({"loss": loss}, split="train")
            tel.log({"loss/val": val_loss, "acc/val": val_acc}, epoch=epoch)

Steps count optimizer steps: after the first ``optimizer.step()`` the step is 1, and
everything recorded for that iteration (statistics, timing, what ``log()`` gets
after the step) carries step 1. Without an optimizer, pass ``step=`` to ``log()``.

A run restarted from a checkpoint continues as a new attempt of the same run::

    tel = Collector("runs", resume=run_id, start_step=checkpoint["step"],
                    model=model, optimizer=optimizer)

One collector per model and optimizer: a second one on the same model or optimizer
while the first is open raises ``ConfigError`` (its hooks would record everything
twice). How a run ends when its process does (exit, exception, SIGTERM, SIGKILL)
is described in ``collector.shutdown``.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import json
import logging
import math
import numbers
import os
import platform
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from collector import arguments, claims, shutdown
from collector.activations import (
    ActivationWatcher,
    can_create_nonfinite,
    leaf_modules,
    own_code_modules,
)
from collector.arguments import shown
from collector.budget import (
    DENSE_ACTIVATIONS_EVERY,
    DENSE_STEPS,
    LossWatch,
    OverheadBudget,
    Strides,
)
from collector.distributed import Placement, param_stats_every, placement
from collector.gradients import GradientWatch, StepGradients, host_values
from collector.guard import GuardCounters, guarded
from collector.hooks import HookSet
from collector.modes import ModeWatch
from collector.modules import ModelSummary
from collector.params import ParamWatcher, select_parameters
from collector.samples import SampleWatcher
from collector.system import StepTimer, peak_host_memory_bytes
from store.compaction import compact_run
from store.digest import write_digest
from store.errors import ConfigError, StoreError
from store.records import Rows, json_safe, plain_json, safe_text
from store.schema import SCHEMA_VERSION, EventKind, Stream
from store.writer import Writer

log = logging.getLogger(__name__)


class Collector:
    """Records one training run into the store at ``root``.

    Arguments that are not obvious:
        stats_every: record per-parameter grad/weight/update statistics every this many
            optimizer steps (1 = every step, 0 = never). None (the default): every step
            for the first ``budget.DENSE_STEPS`` steps, then as often as
            ``overhead_budget`` allows, and every step again for a while when the
            training loss (a metric named ``loss``) jumps or turns NaN (see
            ``collector.budget``); each change is recorded as a ``sampling`` event.
        include, exclude: shell-style patterns on parameter names to watch or skip.
        activations_every: activation statistics of leaf modules every this many steps
            (0 = never; None, the default: chosen by the overhead budget, a quarter as
            often as tensor statistics); see ``collector.activations`` for the exact
            definitions.
        overhead_budget: the share of step time the sampled statistics may take when a
            stride is None (default 3 %). The NaN check (``nan_check``) is outside it:
            it runs on its own stride.
        samples_every, samples_budget_bytes: feature maps of conv layers and the first
            conv layer's filters every this many steps, up to this many bytes per run.
        module_include, module_exclude: shell-style patterns on module names.
        nan_check: look for the first module whose output turns NaN/Inf every this many
            steps (True = 1 = every step, False = 0 = never). Every step is exact; a
            larger value divides the cost (see README) but reports an origin only at
            the next checked step, when NaN weights may already point at the first
            layer, and can miss a NaN that lasts one step (a bad batch).
        flush_every_s: at most this many seconds of data are lost if the process dies.
        heartbeat_every_s: how often a live run says so (runs that stop without a final
            event and without heartbeats are reported ``crashed``).
        resume: the id of an existing run to continue, e.g. after a restart from a
            checkpoint: this process appends a new attempt to it (nothing written is
            touched; views keep the latest attempt of each step).
        start_step: the optimizer step to count from (a checkpoint's step). Default: 0,
            or when resuming the last step this rank recorded in the run.

    The rank comes from torch.distributed (or the ``RANK`` variable launchers set);
    see ``collector.distributed`` for how ranks share one run.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        stats_every: int | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        activations_every: int | None = None,
        samples_every: int = 100,
        samples_budget_bytes: int = 8 * 2**20,
        module_include: Sequence[str] | None = None,
        module_exclude: Sequence[str] | None = None,
        nan_check: int = 1,
        overhead_budget: float = 0.03,
        flush_every_s: float = 2.0,
        heartbeat_every_s: float = 15.0,
        resume: str | None = None,
        start_step: int | None = None,
    ) -> None:
        arguments.check(
            name=name,
            config=config,
            model=model,
            optimizer=optimizer,
            stats_every=stats_every,
            include=include,
            exclude=exclude,
            activations_every=activations_every,
            samples_every=samples_every,
            samples_budget_bytes=samples_budget_bytes,
            module_include=module_include,
            module_exclude=module_exclude,
            nan_check=nan_check,
            overhead_budget=overhead_budget,
            flush_every_s=flush_every_s,
            heartbeat_every_s=heartbeat_every_s,
            resume=resume,
            start_step=start_step,
        )
        watched = select_parameters(model, optimizer, include=include, exclude=exclude)
        # The config as stored, before anything exists on disk: a config that cannot be
        # stored leaves no empty run directory behind.
        stored_config, converted = plain_json(dict(config) if config is not None else {})
        self._root = Path(root)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store directory {str(self._root)!r}: {e}") from e
        if not os.access(self._root, os.W_OK):
            raise StoreError(f"the store directory {str(self._root)!r} is not writable")
        if name is not None and safe_text(name) != name:
            log.warning(
                "run name %s is not valid Unicode (lone surrogates, as os.fsdecode gives for "
                "a non-UTF-8 path); stored with them escaped: %r",
                ascii(name),
                safe_text(name),
            )
        self._name = name
        self._unicode_warned = False
        self._resumed = resume is not None
        self._placement = placement()
        place = claims.claim(self._root, self._placement, name=name, resume=resume)
        self._run_id, self._run_dir = place.run_id, place.run_dir
        if start_step is None:  # resumed: where this rank stopped; fresh: 0
            start_step = place.last_step
        self._model = model
        self._optimizer = optimizer
        self._step = start_step
        self._epoch: int | None = None
        self._closed = False
        self._writer = Writer(
            self._root,
            self._run_id,
            rank=self._placement.rank,
            attempt=place.attempt,
            flush_every_s=flush_every_s,
            heartbeat_every_s=heartbeat_every_s,
        )
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
        self._budget = budget if adaptive else None
        self._loss_watch = LossWatch()
        self._pending_logs: list[_PendingLog] = []
        # The collector's own time inside the step being timed: on sampled statistics
        # (the budget's costs), and in all (subtracted from the step time: the budget
        # compares costs with the training's own time).
        self._stats_s = 0.0
        self._activations_s = 0.0
        self._own_s = 0.0
        # The part of _own_s paid on every step, sampled or not (the budget's fixed cost).
        self._fixed_s = 0.0
        self._lr_columns: dict[str, list[str]] = {}
        self._memory_read_at = -math.inf
        every = budget.stats_sampled if stats_every is None else stats_every
        self._params = ParamWatcher(watched, every=param_stats_every(self._placement, every))
        leaves = (
            leaf_modules(model, include=module_include, exclude=module_exclude)
            if model is not None
            else []
        )
        self._leaves = leaves
        self._composites = (
            own_code_modules(model, include=module_include, exclude=module_exclude)
            if model is not None
            else []
        )
        self._activations = ActivationWatcher(
            leaves,
            every=budget.activations_sampled if activations_every is None else activations_every,
            nan_check_every=int(nan_check),
        )
        self._samples = SampleWatcher(
            leaves, every=samples_every, budget_bytes=samples_budget_bytes
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
        self._step_examples = 0  # examples in this step's training forwards so far
        # System rows whose gradient norms are still on an accelerator (read in batches)
        self._pending_system: list[tuple[Rows, StepGradients]] = []
        self._summary = ModelSummary(model) if model is not None else None
        self._summary_written = model is None
        self._device = watched[0][1].device if watched else torch.device("cpu")
        try:
            payload = self._start_payload(stored_config, converted, watched)
            self._event(EventKind.RUN_STARTED, payload)
            self._attach()
        except BaseException:
            self._hooks.remove()
            self._writer.close()
            raise
        # On disk before training starts (one write, a few ms): a run killed in its
        # first seconds still exists, with a status, instead of an empty directory.
        self._writer.flush(timeout=1.0)  # a hung disk costs start-up 1 s, never more
        arguments.watch(self._run_id, model, optimizer)
        shutdown.register(self)

    # -- public face -------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def run_dir(self) -> Path:
        return self._run_dir

    @property
    def rank(self) -> int:
        return self._writer.rank

    @property
    def attempt(self) -> int:
        """0 for a fresh run, then 1, 2... for each ``resume`` of this rank."""
        return self._writer.attempt

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (or the last ``step=`` given to ``log()``)."""
        return self._step

    @property
    def epoch(self) -> int | None:
        return self._epoch

    @property
    def rows_dropped(self) -> int:
        """Rows the writer could not store (queue full or I/O errors) so far."""
        return self._writer.rows_dropped

    def log(
        self,
        metrics: Mapping[str, float | int | torch.Tensor],
        *,
        split: str | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        """Record scalar values. ``{"loss/val": x}`` means name ``loss``, split ``val``.

        Tensor values on the CPU are read at once. Tensor values on an accelerator are
        kept there and moved to the host in batches (every ``LOG_BATCH`` calls, at a
        sampled step, which synchronises anyway, and at ``flush()``/``close()``): no
        host synchronisation per step. Their rows keep the step, epoch and time of the
        call; a loss jump in them starts a dense burst when the batch is read.
        """
        if not isinstance(metrics, Mapping):
            raise ConfigError(
                f"log() takes a mapping of name -> value, got {type(metrics).__name__}"
            )
        arguments.check_optional_int("epoch", epoch)
        arguments.check_optional_int("step", step)
        if split is not None and (not isinstance(split, str) or not split):
            raise ConfigError(f"split must be a non-empty string or None, got {shown(split)}")
        if split is not None and not split.isascii():
            split = self._valid_unicode(split)
        if self._closed:
            log.warning("log() on closed run %s ignored", self._run_id)
            return
        start = time.perf_counter()
        names: list[str] = []
        splits: list[str | None] = []
        tensors: list[tuple[int, torch.Tensor]] = []
        values: list[float] = []
        for key, value in metrics.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"metric names must be non-empty strings, got {shown(key)}")
            if not key.isascii():
                key = self._valid_unicode(key)
            name, row_split = key, split
            if split is None and "/" in key:
                name, _, row_split = key.rpartition("/")
                if not name or not row_split:
                    raise ConfigError(f"metric {key!r}: expected 'name/split', e.g. 'loss/val'")
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ConfigError(
                        f"metric {key!r} is a tensor of shape {tuple(value.shape)}; "
                        "log() takes one number per name (reduce it first, e.g. .mean())"
                    )
                if value.is_complex() or value.dtype is torch.bool:
                    raise ConfigError(
                        f"metric {key!r} is a {value.dtype} tensor; log() takes real numbers "
                        "(log .real and .imag, or .abs(), of a complex value; .float() of a flag)"
                    )
                if _kept_on_device(value):
                    tensors.append((len(values), value.detach().reshape(())))
                    values.append(math.nan)
                else:
                    # A CPU tensor: item() reads memory, no device sync (and, unlike
                    # float(), no warning for a value that requires grad).
                    values.append(float(value.item()))
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                try:
                    values.append(float(value))
                except OverflowError as e:  # 10**400: no float64 holds it
                    raise ConfigError(
                        f"metric {key!r} is a {type(value).__name__} beyond the float64 range "
                        "(about 1.8e308); log a float (math.inf if that is what it means)"
                    ) from e
            else:
                raise ConfigError(
                    f"metric {key!r} has a value of type {type(value).__name__}; "
                    "expected a real number or a one-element tensor"
                )
            names.append(name)
            splits.append(row_split)
        if epoch is not None:
            self._epoch = epoch
        if step is not None and self._optimizer is None:
            self._step = max(self._step, step)
        entry = _PendingLog(
            self._step if step is None else step, self._epoch, time.time(), names, splits, values
        )
        if tensors:  # values kept on an accelerator
            # One float64 tensor per call on the (first) accelerator; read in batches.
            device = tensors[0][1].device
            entry.indices = [i for i, _ in tensors]
            entry.device_values = torch.stack([t.to(device, torch.float64) for _, t in tensors])
            self._pending_logs.append(entry)
            if len(self._pending_logs) >= LOG_BATCH:
                start += self._read_pending_logs()
        else:
            self._record_log(entry)
        elapsed = time.perf_counter() - start
        self._own_s += elapsed
        self._fixed_s += elapsed

    def _valid_unicode(self, text: str) -> str:
        """``text`` as stored: lone surrogates escaped (``records.safe_text``), said once."""
        stored = safe_text(text)
        if stored != text and not self._unicode_warned:
            self._unicode_warned = True
            log.warning(
                "run %s: metric name %s is not valid Unicode (lone surrogates); stored with "
                "them escaped as %r (said once per run)",
                self._run_id,
                ascii(text),
                stored,
            )
        return stored

    def _read_pending_logs(self) -> float:
        """Move the kept accelerator values to the host in one transfer and record their
        rows; the seconds spent waiting for the device (training, not the collector)."""
        pending, self._pending_logs = self._pending_logs, []
        if not pending:
            return 0.0
        by_device: dict[torch.device, list[tuple[_PendingLog, torch.Tensor]]] = {}
        for entry in pending:
            kept = entry.device_values
            assert kept is not None  # only entries with device values are pending
            by_device.setdefault(kept.device, []).append((entry, kept))
        waited = 0.0
        for pairs in by_device.values():
            stacked = torch.cat([kept for _, kept in pairs])
            before = time.perf_counter()
            host = stacked.cpu().tolist()  # waits for the kernels queued so far
            waited += time.perf_counter() - before
            values = iter(host)
            for entry, _ in pairs:
                for i in entry.indices:
                    entry.values[i] = next(values)
        for entry in pending:
            self._record_log(entry)
        return waited

    def _record_log(self, entry: _PendingLog) -> None:
        if self._budget is not None:
            self._watch_loss(entry.names, entry.splits, entry.values)
        columns: dict[str, Sequence[Any]] = {
            "name": entry.names,
            "split": entry.splits,
            "value": entry.values,
        }
        self._writer.put(Rows(Stream.SCALARS, entry.step, entry.epoch, entry.wall_time, columns))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Publish everything recorded so far (blocks until written or ``timeout``)."""
        if self._pending_logs:
            self._read_pending_logs()
        if self._pending_system:
            self._read_pending_system()
        return self._writer.flush(timeout)

    def close(self, *, error: BaseException | None = None, compact: bool = True) -> None:
        """End the run: remove hooks, record how it ended, drain, compact. Idempotent.

        ``compact=False`` leaves the segments as written (a process that must exit
        fast, e.g. on SIGTERM; ``telemetry compact`` merges them later).
        """
        if self._closed:
            return
        self._closed = True
        self._hooks.remove()
        self._sample_hooks.remove()
        arguments.unwatch(self._run_id, self._model, self._optimizer)
        self._write_summary()  # if no optimizer step came after the first forward
        try:
            self._read_pending_logs()
            self._read_pending_system()
        except Exception as e:  # a broken device must not cost the run its ending
            log.warning("run %s: could not read logged values from the device: %s", self._run_id, e)
        try:
            self._record_origin(self._activations.find_origin())  # the last, unread steps
        except Exception as e:  # never lose the run's ending over a diagnostic
            log.warning("NaN origin check failed at close: %s", e)
        shutdown.unregister(self)
        if error is None:
            self._event(EventKind.RUN_FINISHED, {"steps": self._step, **self._health()})
        else:
            payload = {"type": type(error).__name__, "message": str(error)[:2000]}
            self._event(EventKind.RUN_FAILED, {**payload, "steps": self._step, **self._health()})
        self._writer.close()
        w = self._writer
        # One warning per failing disk: the writer has said so already if it failed too.
        level = logging.DEBUG if w.warned else logging.WARNING
        if compact:
            try:
                compact_run(self._run_dir, rank=w.rank, attempt=w.attempt)
            except Exception as e:  # the data is on disk either way; compaction is an optimisation
                log.log(level, "could not compact run %s (%s); segments kept", self._run_id, e)
        if not w.drained:
            return  # a writer that died or timed out: its activity is not the whole story
        try:
            write_digest(self._run_dir, self._run_id, w.rank, w.attempt, w.activity)
        except Exception as e:  # an optimisation for listing runs: readers fall back
            log.log(level, "could not write the digest of run %s (%s)", self._run_id, e)

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(error=exc)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Collector(run_id={self._run_id!r}, step={self._step}, {state})"

    # -- hooks -------------------------------------------------------------------------

    def _attach(self) -> None:
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
                for handle in self._gradients.attach(self._model):
                    self._hooks.add(handle)
        if self._model is not None:
            fwd = guarded(g, "forward_pre")(self._on_forward_start)
            self._hooks.add(self._model.register_forward_pre_hook(lambda m, args: fwd(m, args)))
            if self._nan_check:
                checked = [(n, m) for n, m in self._leaves if can_create_nonfinite(m)]
                for name, module in checked + self._composites:
                    check = self._activations.check_hook(name, module, g.failures)
                    self._hooks.add(module.register_forward_hook(check))
        if self._summary is not None:
            self._summary.attach(lambda name: guarded(g, name))

    def _on_forward_start(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        start = time.perf_counter()
        first = args[0] if args else None
        batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else None
        grad_enabled = torch.is_grad_enabled()
        training = module.training and grad_enabled
        self._timer.on_forward_start(training=training, batch_size=batch)
        if training:
            self._step_examples += batch or 0
        elif not grad_enabled and self._modes is not None and self._modes.active:
            payload = self._modes.on_forward(self._step)
            if payload is not None:
                self._event(EventKind.EVAL_IN_TRAINING_MODE, payload)
        step = self._step + 1  # the forward belongs to the step in progress
        self._activations.on_forward_start(step, training=training, first_input=first)
        self._samples.on_forward_start(step, training=training)
        sampled = self._activations.sampling or self._samples.sampling
        if sampled and not len(self._sample_hooks):
            g = self._guard
            for name, module in self._leaves:
                out = guarded(g, "forward_output")(functools.partial(self._on_sampled_output, name))
                self._sample_hooks.add(module.register_forward_hook(out))
        elapsed = time.perf_counter() - start
        self._own_s += elapsed
        self._fixed_s += elapsed

    def _on_sampled_output(
        self, name: str, module: torch.nn.Module, args: tuple[Any, ...], output: Any
    ) -> None:
        start = time.perf_counter()
        self._activations.on_sampled_output(name, module, output)
        self._samples.on_output(name, output)
        self._activations_s += time.perf_counter() - start

    def _on_before_optimizer_step(self) -> None:
        start = time.perf_counter()
        if self._gradients is not None:
            self._gradients.on_before_optimizer_step()
        sampled_start = time.perf_counter()
        self._params.on_before_optimizer_step(self._step + 1)
        end = time.perf_counter()
        self._stats_s += end - sampled_start
        self._own_s += sampled_start - start
        self._fixed_s += sampled_start - start

    def _on_after_optimizer_step(self) -> None:
        self._step += 1
        timing = self._timer.on_after_optimizer_step()
        hook_start = time.perf_counter()
        # The plain rows first: a failing statistic (the guard stops the hook there)
        # must not cost the step its learning rate and timing.
        assert self._optimizer is not None  # only registered with an optimizer
        groups = self._optimizer.param_groups
        lrs = [float(g["lr"]) if "lr" in g else math.nan for g in groups]
        self._put(Stream.SCALARS, self._lr_labels(len(groups)) | {"value": lrs})
        self._system_row(timing)
        start = time.perf_counter()
        tensors = self._params.on_after_optimizer_step()
        if tensors is not None:
            self._put(Stream.TENSORS, tensors)
            if self._pending_logs:  # the statistics synchronised already: no extra wait
                self._read_pending_logs()
            if self._pending_system:
                self._read_pending_system()
        sampled_in_hook = time.perf_counter() - start
        stats_s = self._stats_s + sampled_in_hook if tensors is not None else None
        if len(self._sample_hooks):
            self._sample_hooks.remove()  # leaf hooks live for one sampled step only
        start = time.perf_counter()
        activations, origin = self._activations.on_after_optimizer_step(self._step)
        if activations is not None:
            self._put(Stream.ACTIVATIONS, activations)
        elapsed = time.perf_counter() - start
        sampled_in_hook += elapsed
        activations_s = self._activations_s + elapsed if activations is not None else None
        self._record_origin(origin)
        samples = self._samples.on_after_optimizer_step()
        if samples is not None:
            self._put(Stream.SAMPLES, samples)
        if self._summary is not None and self._summary.done:
            self._write_summary()
        if self._budget is not None:
            check_s = self._activations.take_check_seconds()
            training_s = None
            if timing is not None and timing["step_time_s"] is not None:
                own = self._own_s + self._stats_s + self._activations_s + check_s
                training_s = timing["step_time_s"] - own
            strides = self._budget.observe(
                self._step,
                step_seconds=training_s,
                stats_seconds=stats_s,
                activations_seconds=activations_s,
                fixed_seconds=self._fixed_s + check_s,
            )
            if strides is not None:
                payload = self._sampling_payload(strides, "budget")
                self._event(EventKind.SAMPLING, payload, essential=False)
        self._stats_s = self._activations_s = 0.0
        # The rest of this hook falls in the next step's timing window: all of it is the
        # collector's, and what was not sampled statistics is paid on every step.
        self._own_s = time.perf_counter() - hook_start
        self._fixed_s = self._own_s - sampled_in_hook
        self._timer.hooks_done()

    def _system_row(self, timing: dict[str, float | None] | None) -> None:
        """The step's ``system`` row: timing (null when untimed), memory, batch size and
        gradient norms. Norms on an accelerator wait to be read with others."""
        columns: dict[str, list[Any]] = {k: [v] for k, v in (timing or {}).items()}
        columns |= self._memory()
        columns["batch_size"] = [self._step_examples or None]
        self._step_examples = 0
        rows = Rows(Stream.SYSTEM, self._step, self._epoch, time.time(), columns)
        grads = self._gradients.on_after_optimizer_step() if self._gradients else None
        kept = grads.tensors() if grads is not None else []
        if grads is None or not kept:
            self._put_system(rows, grads, [])
        elif kept[0].device.type == "cpu":
            # CPU tensors: reading them is a memory read, no device sync
            self._put_system(rows, grads, [float(t) for t in kept])
        else:
            self._pending_system.append((rows, grads))
            if len(self._pending_system) >= LOG_BATCH:
                self._read_pending_system()

    def _read_pending_system(self) -> None:
        """Move the kept gradient norms to the host in one transfer; write their rows."""
        pending, self._pending_system = self._pending_system, []
        if not pending:
            return
        device = pending[0][1].tensors()[0].device
        flat = [t.to(device, torch.float64).reshape(()) for _, g in pending for t in g.tensors()]
        values = iter(torch.stack(flat).cpu().tolist())
        for rows, grads in pending:
            self._put_system(rows, grads, [next(values) for _ in grads.tensors()])

    def _put_system(self, rows: Rows, grads: StepGradients | None, values: list[float]) -> None:
        columns = dict(rows.columns)
        if grads is not None:
            columns |= {k: [v] for k, v in host_values(grads, values).items()}
        self._writer.put(dataclasses.replace(rows, columns=columns))

    def _lr_labels(self, groups: int) -> dict[str, list[str]]:
        """The ``name`` and ``split`` columns of the learning-rate rows (made once; the
        writer copies what it is given)."""
        if len(self._lr_columns.get("name", ())) != groups:
            names = ["lr" if i == 0 else f"lr.group{i}" for i in range(groups)]
            self._lr_columns = {"name": names, "split": ["train"] * groups}
        return self._lr_columns

    def _watch_loss(self, names: list[str], splits: list[str | None], values: list[float]) -> None:
        """A misbehaving training loss makes the next steps dense (``collector.budget``)."""
        assert self._budget is not None
        for name, split, value in zip(names, splits, values, strict=True):
            if name != "loss" or split not in (None, "train"):
                continue
            reason = self._loss_watch.update(value)
            strides = self._budget.burst(self._step + 1) if reason else None
            if strides is not None and reason is not None:
                payload = self._sampling_payload(strides, reason)
                payload |= {"until": self._budget.dense_until}
                self._event(EventKind.SAMPLING, payload, essential=False)

    def _sampling_payload(self, strides: Strides, reason: str) -> dict[str, Any]:
        assert self._budget is not None
        return {
            "stats_every": strides.stats_every,
            "activations_every": strides.activations_every,
            "reason": reason,
            "overhead_budget": self._budget.budget,
            **self._budget.measured,
        }

    def _record_origin(self, origin: tuple[int, dict[str, Any]] | None) -> None:
        if origin is not None:
            step, payload = origin
            self._event(EventKind.NONFINITE_ORIGIN, payload, step=step)

    def _write_summary(self) -> None:
        if self._summary is None or self._summary_written:
            return
        self._summary_written = True
        self._summary.detach()
        self._activations.pre_relu = frozenset(self._summary.feeds)
        self._put(Stream.MODULES, self._summary.rows())

    # -- internals ---------------------------------------------------------------------

    def _memory(self) -> dict[str, list[int]]:
        """The peak memory so far, read at most every ``MEMORY_EVERY_S`` (a peak only
        grows; reading it cost ~40 us a step on a small CPU model): {} in between,
        which leaves the column null."""
        now = time.monotonic()
        if now - self._memory_read_at < MEMORY_EVERY_S:
            return {}
        self._memory_read_at = now
        if self._device.type == "cuda":
            return {"max_memory_bytes": [torch.cuda.max_memory_allocated(self._device)]}
        return {"max_memory_bytes": [peak_host_memory_bytes()]}

    def _put(
        self,
        stream: Stream,
        columns: Mapping[str, Sequence[Any]],
        *,
        step: int | None = None,
        essential: bool = False,
    ) -> None:
        self._writer.put(
            Rows(
                stream,
                step=self._step if step is None else step,
                epoch=self._epoch,
                wall_time=time.time(),
                columns=columns,
            ),
            essential=essential,
        )

    def _event(
        self,
        kind: EventKind,
        payload: Mapping[str, Any],
        *,
        step: int | None = None,
        essential: bool = True,
    ) -> None:
        text = json.dumps(json_safe(payload), default=repr, allow_nan=False)
        # Lifecycle events are rare (start, end, NaN origin) and say how the run went:
        # never dropped for a full queue. Sampling strides are not: they can change
        # often, and a queue that stays within its bound matters more.
        self._put(
            Stream.EVENTS,
            {"kind": [kind.value], "payload": [text]},
            step=step,
            essential=essential,
        )

    def _health(self) -> dict[str, Any]:
        health: dict[str, Any] = {
            "rows_dropped": self._writer.rows_dropped,
            "hook_failures": dict(self._guard.failures),
        }
        if self._modes is not None and self._modes.active:
            health["inference_forwards"] = self._modes.summary()
        return health

    def _start_payload(
        self,
        stored: dict[str, Any],
        converted: list[str],
        watched: list[tuple[str, torch.nn.Parameter]],
    ) -> dict[str, Any]:
        model = self._model
        if converted:
            shown = ", ".join(converted[:8]) + (", ..." if len(converted) > 8 else "")
            log.warning(
                "run %s: config values that are not JSON were stored as their repr(): %s",
                self._run_id,
                shown,
            )
        where: Placement = self._placement
        return {
            "name": self._name,
            "config": stored,
            "rank": where.rank,
            "world_size": where.world_size,
            "attempt": self._writer.attempt,
            "resumed": self._resumed,
            "start_step": self._step,
            "schema_version": SCHEMA_VERSION,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "host": socket.gethostname(),
            "user": _user(),
            "pid": os.getpid(),
            "argv": sys.argv[:20],
            "device": str(self._device),
            "model": type(model).__name__ if model is not None else None,
            "optimizer": type(self._optimizer).__name__ if self._optimizer is not None else None,
            "parameters": sum(p.numel() for p in model.parameters()) if model is not None else None,
            "trainable_parameters": sum(p.numel() for _, p in watched),
            "watched_parameters": len(watched),
            "sampling": self._sampling_start(),
        }

    def _sampling_start(self) -> dict[str, Any]:
        """How statistics are sampled: fixed strides, or the budget's dense start."""
        if self._budget is None:
            return {
                "stats_every": self._params.every,
                "activations_every": self._activations.every,
            }
        fixed = self._budget.strides
        return {
            "stats_every": 1 if self._budget.fixed_stats_every is None else fixed.stats_every,
            "activations_every": DENSE_ACTIVATIONS_EVERY
            if self._budget.fixed_activations_every is None
            else fixed.activations_every,
            "overhead_budget": self._budget.budget,
            "dense_steps": self._budget.dense_steps,
        }


def _held_by(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _kept_on_device(t: torch.Tensor) -> bool:
    """Whether a logged value waits on its device (reading it would synchronise)."""
    return t.device.type != "cpu"


MEMORY_EVERY_S = 1.0
"""Seconds between two readings of the peak memory (``system.max_memory_bytes``)."""

LOG_BATCH = 16
"""Calls of ``log()`` whose accelerator values are read in one transfer."""


@dataclasses.dataclass
class _PendingLog:
    """One ``log()`` call's rows; ``values[i]`` for ``i`` in ``indices`` still on the device."""

    step: int
    epoch: int | None
    wall_time: float
    names: list[str]
    splits: list[str | None]
    values: list[float]
    indices: list[int] = dataclasses.field(default_factory=list)
    device_values: torch.Tensor | None = None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None
