"""Where a run's rows go: its writer, each batch stamped with the run's position.

One ``Output`` per collector, shared by the parts that record rows (the facade's
``log()``/``record()``, the step hooks, the system rows): it holds the current
optimizer step and epoch, so that every row of a step carries the same ones.
``seal()`` ends it: the writer drained and closed, its segments compacted, the digest,
and the digest's line in the store's run index.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from store.compaction import compact_run
from store.digest import write_digest
from store.indexing import record_writer
from store.location import StorePath
from store.records import Rows, json_safe
from store.schema import EventKind, Stream
from store.writer import Writer

log = logging.getLogger(__name__)


class Output:
    """The writer of one run, and the step and epoch its rows are stamped with."""

    __slots__ = ("epoch", "step", "writer")

    def __init__(self, writer: Writer, *, step: int) -> None:
        self.writer = writer
        self.step = step
        """Optimizer steps taken so far (or the largest ``step=`` given without an optimizer)."""
        self.epoch: int | None = None

    def put(
        self,
        stream: Stream,
        columns: Mapping[str, Sequence[Any]],
        *,
        step: int | None = None,
        essential: bool = False,
    ) -> None:
        """Queue rows of ``stream`` at ``step`` (default: the current one), now."""
        self.writer.put(
            Rows(
                stream,
                step=self.step if step is None else step,
                epoch=self.epoch,
                wall_time=time.time(),
                columns=columns,
            ),
            essential=essential,
        )

    def event(
        self,
        kind: EventKind,
        payload: Mapping[str, Any],
        *,
        step: int | None = None,
        essential: bool = True,
    ) -> None:
        """One ``events`` row: ``kind`` and its payload as JSON."""
        text = json.dumps(json_safe(payload), default=repr, allow_nan=False)
        # Lifecycle events are rare (start, end, NaN origin) and say how the run went:
        # never dropped for a full queue. Sampling strides are not: they can change
        # often, and a queue that stays within its bound matters more.
        self.put(
            Stream.EVENTS,
            {"kind": [kind.value], "payload": [text]},
            step=step,
            essential=essential,
        )

    def seal(self, run_dir: StorePath, *, compact: bool) -> None:
        """Close the writer (it drains its queue), then merge this writer's segments
        (``compact``) and write its digest; neither of the latter is needed to read."""
        w = self.writer
        w.close()
        # One warning per failing disk: the writer has said so already if it failed too.
        level = logging.DEBUG if w.warned else logging.WARNING
        if compact:
            try:
                compact_run(run_dir, rank=w.rank, attempt=w.attempt)
            except Exception as e:  # the data is on disk either way; compaction is an optimisation
                log.log(level, "could not compact run %s (%s); segments kept", w.run_id, e)
        if not w.drained:
            return  # a writer that died or timed out: its activity is not the whole story
        try:
            write_digest(run_dir, w.run_id, w.rank, w.attempt, w.activity)
        except Exception as e:  # an optimisation for listing runs: readers fall back
            log.log(level, "could not write the digest of run %s (%s)", w.run_id, e)
            return
        try:
            record_writer(run_dir, w.rank, w.attempt)
        except Exception as e:  # the same: runs not in the index are listed from the digests
            log.log(level, "could not add run %s to the store's run index (%s)", w.run_id, e)
