"""Per-writer digests: what one (rank, attempt) of a run wrote, to list runs fast.

When a collector closes (after compaction), it writes
``<run>/digests/<rank>-<attempt>.json``: the writer's live segment names per stream,
the step and wall-time range of its rows in the streams the ``runs`` view reads
(events, scalars, tensors, system), the lowest and highest finite value of each
scalar (name, split), and its lifecycle events (``run_started``,
``run_finished``/``run_failed``). A reader that only lists runs
(``open_store(path, runs_only=True)``, ``telemetry runs``) uses a digest instead of
reading that writer's segments, but only while the segment names it lists are
exactly the writer's live segments on disk: a segment written, merged or removed
later makes the digest stale, and the reader goes back to the segments, which stay
the source of truth. So does a resumed run (any attempt > 0): its views keep the
latest attempt of each step, which needs the rows. A missing or unreadable digest
costs only speed.

Listing 10,000 small runs read ~30,000 Parquet footers and loaded every segment;
with digests it reads one small JSON file per run (``benchmarks/store_scale.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collector.compaction import live_segments
from collector.layout import TMP_PREFIX
from collector.schema import EventKind, Stream

DIGEST_DIR = "digests"
DIGEST_VERSION = 1
ACTIVITY_STREAMS = (Stream.EVENTS, Stream.SCALARS, Stream.TENSORS, Stream.SYSTEM)
"""The streams whose rows say how far a run got and when it was last seen."""
LIFECYCLE = (EventKind.RUN_STARTED, EventKind.RUN_FINISHED, EventKind.RUN_FAILED)


@dataclass
class Activity:
    """What a writer published in the activity streams (kept by the writer thread)."""

    first_us: int | None = None  # wall time, microseconds since the epoch
    last_us: int | None = None
    max_step: int | None = None
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    # (name, split) -> [lowest, highest] finite value
    metrics: dict[tuple[str, str | None], list[float]] = field(default_factory=dict)

    def add(self, stream: Stream, table: pa.Table) -> None:
        """Account for ``table``, just published to ``stream``."""
        if stream not in ACTIVITY_STREAMS or table.num_rows == 0:
            return
        times = pc.min_max(table["wall_time"].cast(pa.int64()))
        first, last = times["min"].as_py(), times["max"].as_py()
        step = pc.max(table["step"]).as_py()
        self.first_us = first if self.first_us is None else min(self.first_us, first)
        self.last_us = last if self.last_us is None else max(self.last_us, last)
        self.max_step = step if self.max_step is None else max(self.max_step, step)
        if stream is Stream.SCALARS:
            finite = table.filter(pc.is_finite(table["value"]))
            grouped = finite.group_by(["name", "split"], use_threads=False).aggregate(
                [("value", "min"), ("value", "max")]
            )
            for row in grouped.to_pylist():
                key = (row["name"], row["split"])
                lo, hi = row["value_min"], row["value_max"]
                old = self.metrics.get(key)
                self.metrics[key] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
        if stream is Stream.EVENTS:
            kinds = pa.array([k.value for k in LIFECYCLE])
            rows = table.filter(pc.is_in(table["kind"], value_set=kinds))
            wall_us = rows["wall_time"].cast(pa.int64())  # exact: no float seconds
            for kind, payload, wall in zip(
                rows["kind"].to_pylist(),
                rows["payload"].to_pylist(),
                wall_us.to_pylist(),
                strict=True,
            ):
                self.lifecycle.append({"kind": kind, "payload": payload, "wall_time": wall})


@dataclass(frozen=True)
class Digest:
    run_id: str
    rank: int
    attempt: int
    segments: dict[str, list[str]]  # stream -> live segment file names, sorted; no empty lists
    first_us: int | None
    last_us: int | None
    max_step: int | None
    lifecycle: list[dict[str, Any]]
    metrics: list[dict[str, Any]]  # name, split, min, max (finite values only)


def digest_name(rank: int, attempt: int) -> str:
    """The digest's file name inside ``<run>/digests``."""
    return f"{rank}-{attempt}.json"


def digest_path(run_dir: Path, rank: int, attempt: int) -> Path:
    return run_dir / DIGEST_DIR / digest_name(rank, attempt)


def writer_segments(run_dir: Path, rank: int, attempt: int) -> dict[str, list[str]]:
    """The live segment names of one writer, per stream that has any (sorted)."""
    out: dict[str, list[str]] = {}
    for stream in Stream:
        live, _ = live_segments(run_dir / stream.value)
        names = sorted(p.name for p, s in live.items() if (s.rank, s.attempt) == (rank, attempt))
        if names:
            out[stream.value] = names
    return out


def write_digest(run_dir: Path, run_id: str, rank: int, attempt: int, activity: Activity) -> Path:
    """Write the digest of a closed writer atomically (after its compaction)."""
    body = {
        "version": DIGEST_VERSION,
        "run_id": run_id,
        "rank": rank,
        "attempt": attempt,
        "segments": writer_segments(run_dir, rank, attempt),
        "first_us": activity.first_us,
        "last_us": activity.last_us,
        "max_step": activity.max_step,
        "lifecycle": activity.lifecycle,
        "metrics": [
            {"name": name, "split": split, "min": lo, "max": hi}
            for (name, split), (lo, hi) in activity.metrics.items()
        ],
    }
    final = digest_path(run_dir, rank, attempt)
    final.parent.mkdir(exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(body))
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_digest(path: str | Path) -> Digest:
    """The digest at ``path``; ``ValueError`` saying why when it cannot be used
    (``FileNotFoundError`` when there is none)."""
    try:
        with open(path, "rb") as fh:  # FileNotFoundError passes: no digest is no problem
            body = json.loads(fh.read())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a readable digest ({type(e).__name__}: {e})") from e
    if not isinstance(body, dict) or body.get("version") != DIGEST_VERSION:
        raise ValueError(f"not a version {DIGEST_VERSION} digest")
    try:
        segments = {str(k): sorted(v) for k, v in body["segments"].items() if v}
        if not all(isinstance(name, str) for names in segments.values() for name in names):
            raise ValueError("segment names must be strings")
        return Digest(
            run_id=str(body["run_id"]),
            rank=int(body["rank"]),
            attempt=int(body["attempt"]),
            segments=segments,
            first_us=_optional_int(body["first_us"]),
            last_us=_optional_int(body["last_us"]),
            max_step=_optional_int(body["max_step"]),
            lifecycle=[
                {
                    "kind": str(e["kind"]),
                    "payload": str(e["payload"]),
                    "wall_time": int(e["wall_time"]),
                }
                for e in body["lifecycle"]
            ],
            metrics=[
                {
                    "name": str(m["name"]),
                    "split": None if m["split"] is None else str(m["split"]),
                    "min": float(m["min"]),
                    "max": float(m["max"]),
                }
                for m in body["metrics"]
            ],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"a malformed digest ({type(e).__name__}: {e})") from e


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
