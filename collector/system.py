"""Step timing: how long each optimizer step took and how much of it was data wait.

The data wait of a step is the time from the end of the previous optimizer step to
the first *training* forward of the model (``model.training`` and grad enabled),
less the collector's own work after the previous step (its statistics are not a
wait for data); the rest of the step is compute, and the step time still counts
everything. A step whose window contains an evaluation
forward (eval mode or ``no_grad``) is not timed: its wall time mixes validation
into training and would read as a data bottleneck. With gradient accumulation,
only the first micro-batch's wait counts as data wait.

On CUDA these are host times: kernels still queued at the step hook are counted
in the step that waits for them. Good enough to see a data bottleneck; not a
kernel profiler.
"""

from __future__ import annotations

import resource
import sys
import time


class StepTimer:
    def __init__(self) -> None:
        self._last_step_end: float | None = None
        # When the collector's own work after the previous step ended: the data wait
        # counts from here (that work is not waiting for data).
        self._hooks_done: float | None = None
        self._first_forward: float | None = None
        self._batch_size: int | None = None
        self._interrupted = False

    def on_forward_start(self, *, training: bool, batch_size: int | None) -> None:
        if not training:
            self._interrupted = True
        elif self._first_forward is None:
            self._first_forward = time.perf_counter()
            self._batch_size = batch_size

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
                "samples_per_s": (self._batch_size / step_time)
                if self._batch_size and step_time > 0
                else None,
            }
        self._last_step_end = now
        self._hooks_done = None
        self._first_forward = None
        self._batch_size = None
        self._interrupted = False
        return row

    def hooks_done(self) -> None:
        """The collector finished its work after a step: the wait for data starts now."""
        self._hooks_done = time.perf_counter()


def peak_host_memory_bytes() -> int:
    """Peak resident set size of this process."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB
