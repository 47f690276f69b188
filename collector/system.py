"""Step timing: how long each optimizer step took and how much of it was data wait.

The data wait of a step is the time from the end of the previous optimizer step to
the first *training* forward of the model (``model.training`` and grad enabled),
less the collector's own work after the previous step (its statistics are not a
wait for data); the rest of the step is compute, and the step time still counts
everything. A step whose window contains an evaluation
forward (eval mode or ``no_grad``) is not timed: its wall time mixes validation
into training and would read as a data bottleneck. With gradient accumulation,
only the first micro-batch's wait counts as data wait, and ``samples_per_s`` counts the
examples of every micro-batch of the step.

On CUDA these are host times: kernels still queued at the step hook are counted
in the step that waits for them. Good enough to see a data bottleneck; not a
kernel profiler.

``SystemRows`` writes the step's ``system`` row: that timing, the peak memory (read
at most every ``MEMORY_EVERY_S``), the batch size and the gradient norms, the latter
read from an accelerator in batches (no host synchronisation per step).
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import sys
import time
from typing import Any

import torch

from collector.gradients import GradientWatch, StepGradients, host_values
from collector.logged import LOG_BATCH
from collector.output import Output
from store.records import Rows
from store.schema import Stream

MEMORY_EVERY_S = 1.0
"""Seconds between two readings of the peak memory (``system.max_memory_bytes``)."""


class StepTimer:
    """The timing of each optimizer step, from the outermost forwards of the model.

    A step's *first pass* is its first training forward and, when the loop calls the
    model's children rather than the model (``self.encoder(x)`` then ``self.head(h)``),
    the forwards of the other modules that follow it before any module runs again. The
    module that opened the step counts its examples on each call (``examples``: the
    micro-batches of gradient accumulation summed); the rest of the pass reads what it
    made, not more examples.
    """

    def __init__(self) -> None:
        self._last_step_end: float | None = None
        # When the collector's own work after the previous step ended: the data wait
        # counts from here (that work is not waiting for data).
        self._hooks_done: float | None = None
        self._first_forward: float | None = None
        self._opener: object = None  # the module of the step's first training forward
        self._passed: set[int] = set()  # the other modules of the first pass, by id
        self._first_pass = True
        self._interrupted = False
        self.examples = 0
        """Examples of the step's training forwards so far (micro-batches summed); the
        collector reads it for the step's ``batch_size`` before ``on_after_optimizer_step``."""

    def on_forward_start(
        self, module: object, *, training: bool, batch_size: int | None, whole: bool
    ) -> bool:
        """An outermost forward of ``module`` starts (``whole``: the model's own forward, a
        pass by itself). True when it continues the step's first pass (another module,
        not run yet this step, after the first forward)."""
        if not training:
            self._interrupted = True
            return False
        if self._first_forward is None:
            self._first_forward = time.perf_counter()
            self._opener = module
            self._first_pass = not whole
            self.examples += batch_size or 0
            return False
        if module is self._opener:  # the next micro-batch
            self.examples += batch_size or 0
            self._first_pass = False
            return False
        if self._first_pass and id(module) not in self._passed:
            self._passed.add(id(module))
            return True
        self._first_pass = False
        return False

    def on_after_optimizer_step(self) -> dict[str, float | None] | None:
        """The timing of the step that just ended, or None when it cannot be timed honestly."""
        now = time.perf_counter()
        row: dict[str, float | None] | None = None
        last, first = self._last_step_end, self._first_forward
        if last is not None and first is not None and not self._interrupted and first >= last:
            step_time = now - last
            waiting_from = last if self._hooks_done is None else max(last, self._hooks_done)
            row = {
                "step_time_s": step_time,
                "data_time_s": max(first - waiting_from, 0.0),
                "compute_time_s": now - first,
                "samples_per_s": (self.examples / step_time)
                if self.examples and step_time > 0
                else None,
            }
        self._last_step_end = now
        self._hooks_done = None
        self._first_forward = None
        self._opener = None
        self._passed.clear()
        self._first_pass = True
        self._interrupted = False
        self.examples = 0
        return row

    def hooks_done(self) -> None:
        """The collector finished its work after a step: the wait for data starts now."""
        self._hooks_done = time.perf_counter()


def peak_host_memory_bytes() -> int:
    """Peak resident set size of this process."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def memory_total_bytes(device: torch.device) -> int | None:
    """What ``max_memory_bytes`` is measured against: the CUDA device's memory, or the
    machine's physical memory for the CPU (None where it cannot be read)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None


class SystemRows:
    """The ``system`` rows of one run, one per optimizer step."""

    def __init__(self, out: Output, gradients: GradientWatch | None, device: torch.device) -> None:
        self._out = out
        self._gradients = gradients
        self._device = device
        self._memory_read_at = -math.inf
        self.pending: list[tuple[Rows, StepGradients]] = []
        """Rows whose gradient norms are still on an accelerator (read in batches)."""

    def row(self, timing: dict[str, float | None] | None, batch_size: int | None) -> None:
        """The step's row: timing (null when untimed), memory, batch size and gradient
        norms. Norms on an accelerator wait to be read with others."""
        columns: dict[str, list[Any]] = {k: [v] for k, v in (timing or {}).items()}
        columns |= self._memory()
        columns["batch_size"] = [batch_size]
        out = self._out
        rows = Rows(Stream.SYSTEM, out.step, out.epoch, time.time(), columns)
        grads = self._gradients.on_after_optimizer_step() if self._gradients else None
        kept = grads.tensors() if grads is not None else []
        if grads is None or not kept:
            self._put(rows, grads, [])
        elif kept[0].device.type == "cpu":
            # CPU tensors: reading them is a memory read, no device sync
            self._put(rows, grads, [float(t) for t in kept])
        else:
            self.pending.append((rows, grads))
            if len(self.pending) >= LOG_BATCH:
                self.read_pending()

    def read_pending(self) -> None:
        """Move the kept gradient norms to the host in one transfer; write their rows."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        device = pending[0][1].tensors()[0].device
        flat = [t.to(device, torch.float64).reshape(()) for _, g in pending for t in g.tensors()]
        values = iter(torch.stack(flat).cpu().tolist())
        for rows, grads in pending:
            self._put(rows, grads, [next(values) for _ in grads.tensors()])

    def _put(self, rows: Rows, grads: StepGradients | None, values: list[float]) -> None:
        columns = dict(rows.columns)
        if grads is not None:
            columns |= {k: [v] for k, v in host_values(grads, values).items()}
        self._out.writer.put(dataclasses.replace(rows, columns=columns))

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
