"""The asynchronous writer: a bounded queue drained by one named background thread.

The training thread only calls ``put`` (a deque append; a full queue increments a
drop counter instead of blocking). The thread batches rows per stream and publishes a
segment per stream on a fixed ``flush_every_s`` cadence (so a row waits at most
``flush_every_s`` plus the time of one write before it is on disk), when
``max_pending_rows`` rows are waiting, on ``flush()`` and on ``close()``. A failed
write never propagates: its rows are counted as dropped, a warning is logged once,
and a ``dropped`` event with the counts is written at the next flush that succeeds. The thread also
writes a ``heartbeat`` event every ``heartbeat_every_s`` so readers can tell a
live run from a killed one.
"""

from __future__ import annotations

import collections
import enum
import json
import logging
import threading
import time
from collections.abc import Callable

import pyarrow as pa

from store.digest import Activity
from store.layout import SegmentName, stream_dir
from store.location import StorePath
from store.records import Rows, build_table, json_safe
from store.schema import EventKind, Stream
from store.segments import write_segment

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1

Sink = Callable[[pa.Table, StorePath, str], object]
"""Publishes a table as ``directory/filename``; ``segments.write_segment`` by default."""


def _publish(table: pa.Table, directory: StorePath, filename: str) -> object:
    # parents=False: a run directory removed under a live run is not silently recreated
    # (half a run with no run_started); its rows are counted as dropped instead.
    return write_segment(table, directory, filename, parents=False)


class WriterState(str, enum.Enum):
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"  # the thread itself died; puts are counted as dropped


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_CLOSE = object()


class Writer:
    """Appends ``Rows`` to the store of one (run, rank, attempt) from a background thread."""

    def __init__(
        self,
        root: StorePath,
        run_id: str,
        *,
        rank: int = 0,
        attempt: int = 0,
        flush_every_s: float = 2.0,
        heartbeat_every_s: float = 15.0,
        max_queue: int = 10_000,
        max_pending_rows: int = 200_000,
        sink: Sink | None = None,
    ) -> None:
        self.root = root
        self.run_id = run_id
        self.rank = rank
        self.attempt = attempt
        self.flush_every_s = flush_every_s
        self.heartbeat_every_s = heartbeat_every_s
        self.max_pending_rows = max_pending_rows
        self._sink = sink or _publish
        self._items: collections.deque[object] = collections.deque()
        self._max_queue = max_queue
        self._wake_at = max(1, max_queue // 2)
        self._wake = threading.Event()
        self._queued_rows = 0
        # Re-entrant: a SIGTERM handler (collector.shutdown) may close the writer from the
        # training thread while that thread holds the lock in put().
        self._lock = threading.RLock()
        self._state = WriterState.ACTIVE
        # Counters. `_overflow_rows` is touched by the training thread (under the lock),
        # everything else only by the writer thread.
        self._overflow_rows = 0
        self._failed_rows = 0
        self._unrecorded_drops: dict[str, int] = {}
        self._last_error: str | None = None
        self._warned: set[str] = set()  # "io", "queue": one warning each per writer
        self.rows_written = 0
        self._dropped = 0
        self.segments_written = 0
        self._next_seq = 0
        self._next_segment = 0
        self._last_step = 0
        self._pending: dict[Stream, list[Rows]] = {}
        self._pending_rows = 0
        self._sources: list[Callable[[], list[Rows]]] = []
        self.activity = Activity()  # what was published (store.digest); writer thread
        (root / run_id).mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._run, name=f"telemetry-writer-{run_id}-{rank}", daemon=True
        )
        self._thread.start()

    # -- training-thread side -------------------------------------------------------

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def drained(self) -> bool:
        """Closed, with the thread done: everything it published is in ``activity``."""
        return self._state is WriterState.CLOSED and not self._thread.is_alive()

    @property
    def rows_dropped(self) -> int:
        """Rows not stored so far, including a full queue's not yet seen by the thread."""
        return self._dropped + self._overflow_rows

    @property
    def warned(self) -> bool:
        """Whether this writer has already warned about dropped rows."""
        return bool(self._warned)

    def put(self, rows: Rows, *, essential: bool = False) -> bool:
        """Queue ``rows`` without blocking; False (and counted as dropped) if not accepted.

        ``essential`` rows (the few lifecycle events: a run's start and end) are taken
        even when the queue is full, so back-pressure never costs a run its status.

        A deque append, not a ``queue.Queue``: no lock and no wake-up of the writer
        thread per call (waking it on every put cost ~50 us of GIL hand-offs per step).
        The thread drains on its own timer, or early once the queue is half full or
        ``max_pending_rows`` rows wait.
        """
        if not len(rows):
            return True  # nothing pending, no file
        if self._state is WriterState.ACTIVE and (essential or len(self._items) < self._max_queue):
            self._items.append(rows)
            # A heuristic count (the thread resets it without a lock): it only decides when
            # to wake the thread early, never what gets written.
            self._queued_rows += len(rows)
            if len(self._items) >= self._wake_at or self._queued_rows >= self.max_pending_rows:
                self._wake.set()
            return True
        with self._lock:
            if self._state is WriterState.ACTIVE:
                self._overflow_rows += len(rows)  # recorded in a `dropped` event at next flush
            else:
                self._dropped += len(rows)  # closed or dead: nothing left to record it
        return False

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Publish everything queued so far; True when done within ``timeout``.

        ``timeout=0`` asks for a flush without waiting for it.
        """
        if self._state is not WriterState.ACTIVE:
            return False
        request = _Flush()
        self._items.append(request)
        self._wake.set()
        # Wait in slices so a writer thread that dies meanwhile does not cost the full timeout.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if request.done.wait(max(0.0, left)):
                return True
            if not self._thread.is_alive():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close(self, timeout: float | None = 60.0) -> None:
        """Drain the queue, publish the last segments and stop the thread. Idempotent."""
        with self._lock:
            first = self._state is WriterState.ACTIVE
            if first:
                self._state = WriterState.CLOSING
        if first and self._thread.is_alive():
            self._items.append(_CLOSE)
            self._wake.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("telemetry writer of run %s did not drain in time", self.run_id)
        if self._state is WriterState.CLOSING:
            self._state = WriterState.CLOSED

    def add_source(self, take: Callable[[], list[Rows]]) -> None:
        """Call ``take`` on the writer thread before each timed flush and write what it
        returns: rows a producer keeps to hand over in batches (``collector.steprows``)
        then reach the disk on the writer's cadence even while the training thread is
        busy elsewhere (a long validation). ``take`` must be thread-safe; an exception
        from it is logged once and costs only that call's rows."""
        self._sources.append(take)

    # -- writer-thread side -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # the thread must not die silently
            self._state = WriterState.FAILED
            log.error("telemetry writer for run %s stopped: %r", self.run_id, e)
            while self._items:  # release anyone waiting in flush(); later puts count as dropped
                item = self._items.popleft()
                if isinstance(item, _Flush):
                    item.done.set()

    def _loop(self) -> None:
        next_flush = time.monotonic() + self.flush_every_s
        next_heartbeat = time.monotonic() + self.heartbeat_every_s
        while True:
            self._wake.wait(max(0.0, min(next_flush, next_heartbeat) - time.monotonic()))
            self._wake.clear()  # before draining: a put racing with us is drained now or wakes us
            due = time.monotonic() >= next_flush
            # Taken before the queue is drained, added after it: a producer puts what it
            # handed over itself under the same lock, so those rows are queued already.
            taken = self._take_sources() if due else []
            requests, closing = self._drain()
            for rows in taken:
                self._add(rows)
            now = time.monotonic()
            if now >= next_heartbeat and not closing:  # the run's final event stays last
                self._add(self._event(EventKind.HEARTBEAT, {}))
                next_heartbeat = now + self.heartbeat_every_s
            if due or requests or closing or self._pending_rows >= self.max_pending_rows:
                self._flush()
            if due:
                # A fixed cadence, not "flush_every_s after the last write ended": a row
                # waits at most one interval before it is taken, whatever writes took.
                next_flush = max(next_flush + self.flush_every_s, time.monotonic())
            for request in requests:
                request.done.set()
            if closing:
                return

    def _drain(self) -> tuple[list[_Flush], bool]:
        """Move everything queued into pending; return the flush requests and whether to stop."""
        requests: list[_Flush] = []
        closing = False
        self._queued_rows = 0
        while self._items:
            item = self._items.popleft()
            if isinstance(item, Rows):
                self._add(item)
            elif isinstance(item, _Flush):
                requests.append(item)
            elif item is _CLOSE:
                closing = True
        return requests, closing

    def _take_sources(self) -> list[Rows]:
        """What the sources (``add_source``) hand over now."""
        taken: list[Rows] = []
        for take in self._sources:
            try:
                taken += [rows for rows in take() if len(rows)]
            except Exception as e:  # a producer's bug must not stop the writer
                self._warn_once("source", "run %s: rows not handed over: %r", self.run_id, e)
        return taken

    def _add(self, rows: Rows) -> None:
        self._pending.setdefault(rows.stream, []).append(rows)
        self._pending_rows += len(rows)
        # The writer's own events carry the last step: a step no int64 holds (a producer
        # bug) would cost every later event, the run's ending included.
        if rows.step <= INT64_MAX:
            self._last_step = max(self._last_step, rows.step)

    def _event(self, kind: EventKind, payload: dict[str, object]) -> Rows:
        return Rows(
            Stream.EVENTS,
            step=self._last_step,
            epoch=None,
            wall_time=time.time(),
            columns={"kind": [kind.value], "payload": [json.dumps(json_safe(payload))]},
        )

    def _flush(self) -> None:
        with self._lock:
            overflow, self._overflow_rows = self._overflow_rows, 0
        if overflow:
            self._count_drop("queue_full", overflow)
            self._warn_once(
                "queue",
                "telemetry of run %s is produced faster than it can be written: %d rows "
                "dropped (queue of %d batches full); training continues, drops are counted "
                "in a 'dropped' event",
                self.run_id,
                overflow,
                self._max_queue,
            )
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        for stream in pending:
            if stream is not Stream.EVENTS:
                self._write(stream, pending[stream])
        # Events last, so that the `dropped` event counts this flush's own losses (the
        # final flush has no next one), and first among the events: a run's final event
        # stays its last row. It is only forgotten once it is on disk.
        reported = dict(self._unrecorded_drops)
        events = pending.get(Stream.EVENTS, [])
        if reported:
            payload = {
                "rows": sum(reported.values()),
                "reasons": reported,
                "last_error": self._last_error,
            }
            events.insert(0, self._event(EventKind.DROPPED, payload))
        if events and self._write(Stream.EVENTS, events, own=int(bool(reported))) and reported:
            for reason, k in reported.items():
                left = self._unrecorded_drops.get(reason, 0) - k
                if left > 0:
                    self._unrecorded_drops[reason] = left
                else:
                    self._unrecorded_drops.pop(reason, None)

    def _write(self, stream: Stream, batches: list[Rows], *, own: int = 0) -> bool:
        """Publish ``batches`` as one segment; whether it got on disk.

        A batch Arrow refuses (a value no column type holds: a producer bug, or input
        that slipped past validation) is dropped and counted alone: the good batches
        beside it are written without it. ``own``: rows of the first batch that are the
        writer's bookkeeping (the `dropped` event, retried until written), not counted
        as dropped when the write fails.
        """
        try:
            table = self._table(stream, batches)
        except Exception as e:  # find the bad batches: each alone
            good: list[Rows] = []
            for rows in batches:
                try:
                    self._table(stream, [rows])
                except Exception as bad:  # count, warn once, go on
                    self._fail(stream, len(rows), bad)
                else:
                    good.append(rows)
            if len(good) == len(batches):  # no batch alone is at fault
                self._fail(stream, sum(len(b) for b in good) - own, e)
                return False
            return bool(good) and self._write(stream, good, own=own)
        name = SegmentName(self.rank, self.attempt, self._next_segment, self._next_segment)
        try:
            self._sink(table, stream_dir(self.root, self.run_id, stream), name.filename())
        except Exception as e:  # I/O: count, warn once, go on
            self._fail(stream, table.num_rows - own, e)
            return False
        self._next_seq += table.num_rows
        self._next_segment += 1
        self.segments_written += 1
        self.rows_written += table.num_rows
        self.activity.add(stream, table)
        return True

    def _table(self, stream: Stream, batches: list[Rows]) -> pa.Table:
        return build_table(
            stream,
            batches,
            run_id=self.run_id,
            rank=self.rank,
            attempt=self.attempt,
            first_seq=self._next_seq,
        )

    def _fail(self, stream: Stream, n: int, error: Exception) -> None:
        self._count_drop(type(error).__name__, n)
        self._last_error = f"{type(error).__name__}: {error}"
        self._warn_once(
            "io",
            "telemetry could not write %d %s rows of run %s to %s (%s); training "
            "continues, rows that cannot be written are counted and recorded in a "
            "'dropped' event once the store is writable again",
            n,
            stream.value,
            self.run_id,
            self.root,
            self._last_error,
        )

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, *args)

    def _count_drop(self, reason: str, n: int) -> None:
        self._dropped += n
        self._unrecorded_drops[reason] = self._unrecorded_drops.get(reason, 0) + n
