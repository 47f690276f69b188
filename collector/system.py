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

The step's ``system`` row (this timing, the peak memory, the batch size and the
gradient norms) is kept and written with others by ``collector.steprows``.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import torch

TIMING_COLUMNS = ("step_time_s", "data_time_s", "compute_time_s", "samples_per_s")
Timing = tuple[float, float, float, float | None]
"""A step's timing: the ``TIMING_COLUMNS``, in that order."""


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

    def on_after_optimizer_step(self) -> Timing | None:
        """The timing of the step that just ended, or None when it cannot be timed honestly."""
        now = time.perf_counter()
        row: Timing | None = None
        last, first = self._last_step_end, self._first_forward
        if last is not None and first is not None and not self._interrupted and first >= last:
            step_time = now - last
            waiting_from = last if self._hooks_done is None else max(last, self._hooks_done)
            examples = self.examples
            row = (
                step_time,
                max(first - waiting_from, 0.0),
                now - first,
                (examples / step_time) if examples and step_time > 0 else None,
            )
        self._last_step_end = now
        self._hooks_done = None
        self._first_forward = None
        self._opener = None
        self._passed.clear()
        self._first_pass = True
        self._interrupted = False
        self.examples = 0
        return row

    def hooks_done(self, now: float | None = None) -> None:
        """The collector finished its work after a step (at ``now``, a ``perf_counter``
        time; default: now): the wait for data starts then."""
        self._hooks_done = time.perf_counter() if now is None else now


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


def peak_memory_bytes(device: torch.device) -> int | None:
    """The peak memory so far: allocated on a CUDA device, else this process's RSS."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(device))
        return peak_host_memory_bytes()
    except (RuntimeError, OSError, ValueError):
        return None
