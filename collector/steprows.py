"""The rows every step writes, kept as they come and handed to the writer in batches.

Every optimizer step writes a ``system`` row (timing, batch size, gradient norms) and a
learning-rate row per parameter group, and most loops ``log()`` a loss: a few small
rows a step. Handed over as one ``Rows`` each, they cost the training thread a few
microseconds of object building per row and the writer thread as much again per batch
(an Arrow table is built batch by batch). Here a step appends one tuple, and the rows
go to the writer as one ``Rows`` per stream with a per-row envelope
(``store.records.PerRow``):

* from the training thread every ``HANDOVER_STEPS`` steps (``DEVICE_HANDOVER_STEPS``
  when the gradient norms are on an accelerator: reading them synchronises), after a
  sampled step (which synchronised anyway), and at ``flush()``, ``close()``, the NaN
  guard's flush and before ``record()`` (its rows keep their order after these);
* from the writer thread before each of its timed flushes (``Writer.add_source``): the
  rows whose values are on the host (all of them on the CPU), so that a row waits no
  longer than ``flush_every_s`` for the disk, as any other, even while the loop spends
  minutes in a validation.

The gradient norms stay 0-dim tensors until the hand-over: one stack and one read for
all the steps. The peak memory is read once per hand-over, for its last row (a peak
only grows).
"""

from __future__ import annotations

import array
import collections
import threading
import time
from typing import Any

import torch

from collector.gradients import GRADIENT_COLUMNS, StepGradients, host_values
from collector.logged import LoggedEntry
from collector.system import TIMING_COLUMNS, Timing, peak_memory_bytes
from store.records import PerRow, Rows
from store.schema import Stream
from store.writer import Writer

HANDOVER_STEPS = 64
"""Steps (or ``log()`` calls) kept before the training thread hands them over."""

DEVICE_HANDOVER_STEPS = 16
"""The same when gradient norms wait on an accelerator (reading them synchronises)."""

# step, epoch, wall time, timing, batch size, gradient norms, learning rates
StepEntry = tuple[
    int, int | None, float, Timing | None, int | None, StepGradients | None, list[float]
]


class StepRows:
    """The ``system`` rows, learning rates and logged scalars of one run, kept until
    handed over. Producers: the training thread only (``step``, ``logged``); the
    hand-over may run on either thread (one at a time, under a lock)."""

    def __init__(self, writer: Writer, device: torch.device) -> None:
        self._writer = writer
        self._device = device
        # Appended by the training thread without a lock (deque.append is atomic);
        # consumers pop, under the lock, as many entries as they saw.
        self._steps: collections.deque[StepEntry] = collections.deque()
        self._logged: collections.deque[LoggedEntry] = collections.deque()
        # Re-entrant: a SIGTERM handler (collector.shutdown) closes the run on the
        # training thread, perhaps while that thread is inside a hand-over.
        self._lock = threading.RLock()
        self._every = HANDOVER_STEPS if device.type == "cpu" else DEVICE_HANDOVER_STEPS
        self._lr_names: list[str] = []
        writer.add_source(self._take_host_rows)

    def step(
        self,
        step: int,
        epoch: int | None,
        timing: Timing | None,
        batch_size: int | None,
        gradients: StepGradients | None,
        lrs: list[float],
    ) -> None:
        """One optimizer step's row (its gradient norms may still be on the device)."""
        steps = self._steps
        steps.append((step, epoch, time.time(), timing, batch_size, gradients, lrs))
        if len(steps) >= self._every:
            self.hand_over()

    def logged(self, entry: LoggedEntry) -> None:
        """One ``log()`` call's values, on the host."""
        logged = self._logged
        logged.append(entry)
        if len(logged) >= HANDOVER_STEPS:
            self.hand_over()

    def synchronised(self) -> None:
        """The device was just synchronised (a sampled step): gradient norms waiting on
        an accelerator cost no wait now. On the CPU nothing waits: rows stay kept."""
        if self._device.type != "cpu":
            self.hand_over()

    def hand_over(self) -> None:
        """Queue every kept row on the writer (reading the gradient norms: a
        synchronisation on an accelerator)."""
        if not self._steps and not self._logged:
            return
        with self._lock:  # the put under the lock: the writer's take drains it first
            for rows in self._build(host_only=False):
                self._writer.put(rows)

    def _take_host_rows(self) -> list[Rows]:
        """The writer thread's take: the kept rows whose values are on the host."""
        with self._lock:
            return self._build(host_only=True)

    # -- building ------------------------------------------------------------------------

    def _build(self, *, host_only: bool) -> list[Rows]:
        steps: list[StepEntry] = []
        queued = self._steps
        for _ in range(len(queued)):
            if not queued:  # emptied by a hand-over that interrupted this one (a signal)
                break
            grads = queued[0][5]
            if host_only and grads is not None and not _on_host(grads):
                break  # the training thread reads them (in batches: no sync per step)
            steps.append(queued.popleft())
        logged = [self._logged.popleft() for _ in range(len(self._logged)) if self._logged]
        out = []
        if steps:
            out.append(self._system(steps))
            lrs = self._learning_rates(steps)
            if lrs is not None:
                out.append(lrs)
        if logged:
            out.append(_scalars(logged))
        return out

    def _system(self, entries: list[StepEntry]) -> Rows:
        n = len(entries)
        columns: dict[str, list[Any]] = {}
        timings = [e[3] for e in entries]
        for i, name in enumerate(TIMING_COLUMNS):
            columns[name] = [None if t is None else t[i] for t in timings]
        columns["batch_size"] = [e[4] for e in entries]
        memory: list[int | None] = [None] * n
        memory[-1] = peak_memory_bytes(self._device)
        columns["max_memory_bytes"] = memory
        grads = [e[5] for e in entries]
        if any(g is not None for g in grads):
            per_step = _host_gradients(grads)
            for name in GRADIENT_COLUMNS:
                columns[name] = [None if g is None else g[name] for g in per_step]
        return _rows(Stream.SYSTEM, entries, columns)

    def _learning_rates(self, entries: list[StepEntry]) -> Rows | None:
        """The learning-rate rows of the steps: ``lr``, ``lr.group1``... per step."""
        widest = max(len(e[6]) for e in entries)
        if not widest:
            return None
        if len(self._lr_names) < widest:
            self._lr_names = ["lr" if i == 0 else f"lr.group{i}" for i in range(widest)]
        names = self._lr_names
        calls: list[LoggedEntry] = [
            (step, epoch, wall, names[: len(lrs)], ["train"] * len(lrs), lrs)
            for step, epoch, wall, _, _, _, lrs in entries
        ]
        return _scalars(calls)


def _rows(stream: Stream, entries: list[Any], columns: dict[str, Any]) -> Rows:
    """Rows with one envelope per entry (``(step, epoch, wall time, ...)`` tuples)."""
    return _with_envelopes(stream, columns, entries, [1] * len(entries))


def _scalars(entries: list[LoggedEntry]) -> Rows:
    """The ``scalars`` rows of ``log()`` calls (or of the steps' learning rates)."""
    names: list[str] = []
    splits: list[str | None] = []
    values = array.array("d")
    for _, _, _, row_names, row_splits, row_values in entries:
        names.extend(row_names)
        splits.extend(row_splits)
        values.extend(row_values)
    columns: dict[str, Any] = {"name": names, "split": splits, "value": values}
    counts = [len(e[3]) for e in entries]
    return _with_envelopes(Stream.SCALARS, columns, entries, counts)


def _with_envelopes(
    stream: Stream, columns: dict[str, Any], entries: list[Any], counts: list[int]
) -> Rows:
    """Rows whose envelope is entry i's ``(step, epoch, wall time, ...)`` for its
    ``counts[i]`` rows."""
    steps, epochs, times = array.array("q"), [], array.array("d")
    for (step, epoch, wall, *_), k in zip(entries, counts, strict=True):
        steps.extend([step] * k)
        epochs.extend([epoch] * k)
        times.extend([wall] * k)
    return Rows(stream, max(steps), None, 0.0, columns, PerRow(steps, epochs, times))


def _on_host(grads: StepGradients) -> bool:
    return all(t.device.type == "cpu" for t in grads.tensors())


def _host_gradients(grads: list[StepGradients | None]) -> list[dict[str, Any] | None]:
    """Each step's gradient columns, its norms read in one transfer."""
    tensors = [t for g in grads if g is not None for t in g.tensors()]
    if tensors and tensors[0].device.type == "cpu":
        values = iter([t.item() for t in tensors])  # memory reads (a stack costs more)
    elif tensors:
        device = tensors[0].device
        flat = [t.to(device, torch.float64).reshape(()) for t in tensors]
        values = iter(torch.stack(flat).cpu().tolist())
    else:
        values = iter(())
    out: list[dict[str, Any] | None] = []
    for g in grads:
        if g is None:
            out.append(None)
        else:
            out.append(host_values(g, [next(values) for _ in g.tensors()]))
    return out
