"""``telemetry watch``'s loop: follow running runs, their live state and new findings.

Each ``tick`` lists the store's runs (``open_store(runs_only=True)``: digests, no rows),
opens the watched runs alone, reads each one's live state (status, step, last train
and validation loss, steps per second since the last tick) and evaluates the rules
again on the runs whose files or status changed since they were last evaluated (a run
that wrote nothing new keeps its findings). A finding is reported once, the first time
the rules see it: by run, rule and subject (its step and numbers may move as the run
goes on). Without ``--run``, the runs running at the first tick are watched, and any
run that starts later; the watch is over when every watched run has ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analysis import Finding, diagnose, open_store
from store.location import StorePath

ENDED = ("finished", "failed", "crashed")


@dataclass(frozen=True)
class Live:
    """One watched run's state at a tick."""

    run_id: str
    name: str
    status: str
    step: int
    train_loss: float | None
    val_loss: float | None
    steps_per_s: float | None


@dataclass
class Tick:
    """What one tick saw: the watched runs' states, the findings seen for the first
    time, and the runs that started being watched."""

    live: list[Live]
    new_findings: list[Finding]
    new_runs: list[str]

    @property
    def over(self) -> bool:
        return bool(self.live) and all(r.status in ENDED for r in self.live)


@dataclass
class _Seen:
    signature: tuple[Any, ...] = ()
    step: int = 0
    at: float = 0.0


@dataclass
class Watch:
    """The state of one ``telemetry watch`` across ticks."""

    root: StorePath
    run_ids: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic
    watched: list[str] = field(default_factory=list)
    findings: dict[tuple[str, str, str | None], Finding] = field(default_factory=dict)
    _known: set[str] | None = None
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def tick(self) -> Tick:
        new_runs = self._follow()
        if not self.watched:
            return Tick([], [], new_runs)
        with open_store(self.root, run_ids=self.watched) as store:
            live = self._live(store)
            changed = self._changed(store, live)
            fresh: list[Finding] = []
            if changed:
                diagnosis = diagnose(store, run_ids=changed)
                for f in diagnosis.findings:
                    key = (f.run_id, f.rule, f.subject)
                    if key not in self.findings:
                        fresh.append(f)
                    self.findings[key] = f
        return Tick(live, fresh, new_runs)

    def worst(self) -> int:
        """The highest severity rank among the findings seen (-1: none)."""
        return max((f.severity.rank for f in self.findings.values()), default=-1)

    # -- helpers ---------------------------------------------------------------------

    def _follow(self) -> list[str]:
        """Add the runs to watch: the named ones, or those running (new ones too)."""
        with open_store(self.root, runs_only=True) as store:
            rows = store.sql("SELECT run_id, status FROM runs ORDER BY started_at, run_id")
        status = dict(zip(rows["run_id"].to_list(), rows["status"].to_list(), strict=True))
        first = self._known is None
        if first and self.run_ids:
            unknown = [r for r in self.run_ids if r not in status]
            if unknown:
                raise KeyError(", ".join(unknown))
            self.watched = list(self.run_ids)
            self._known = set(status)
            return list(self.run_ids)
        known = self._known or set()
        new = [
            r for r, s in status.items() if s == "running" and r not in known and not self.run_ids
        ]
        self._known = known | set(status)
        self.watched += new
        return new

    def _live(self, store: Any) -> list[Live]:
        runs = store.sql("SELECT run_id, name, status, steps FROM runs").rows()
        losses = store.sql(
            "SELECT run_id, coalesce(split, 'train') AS split, arg_max(value, step) AS last "
            "FROM scalars WHERE name = 'loss' AND coalesce(split, 'train') IN ('train', 'val') "
            "GROUP BY ALL"
        ).rows()
        last = {(run_id, split): value for run_id, split, value in losses}
        now = self.clock()
        out = []
        for run_id, name, status, steps in runs:
            steps = int(steps or 0)
            seen = self._seen.setdefault(run_id, _Seen(step=steps, at=now))
            rate = None
            if now > seen.at and steps >= seen.step:
                rate = (steps - seen.step) / (now - seen.at)
            seen.step, seen.at = steps, now
            out.append(
                Live(
                    run_id,
                    name,
                    status,
                    steps,
                    last.get((run_id, "train")),
                    last.get((run_id, "val")),
                    rate,
                )
            )
        order = {r: i for i, r in enumerate(self.watched)}
        return sorted(out, key=lambda r: order.get(r.run_id, len(order)))

    def _changed(self, store: Any, live: list[Live]) -> list[str]:
        """The runs whose files or status changed since they were last evaluated."""
        status = {r.run_id: r.status for r in live}
        changed = []
        for run_id, files in store.run_files().items():
            stats = []
            for stream, path in files:
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed by a compaction since the listing: the next tick
                stats.append((stream.value, path.name, st.st_size, st.st_mtime_ns))
            signature = (status.get(run_id), tuple(sorted(stats)))
            seen = self._seen.setdefault(run_id, _Seen())
            if signature != seen.signature:
                seen.signature = signature
                changed.append(run_id)
        return changed
