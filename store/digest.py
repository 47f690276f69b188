"""Per-writer digests: what one (rank, attempt) of a run wrote, to list runs fast.

When a collector closes (after compaction), it writes
``<run>/digests/<rank>-<attempt>.json``: the writer's live segment names per stream,
the step and wall-time range of its rows in the streams the ``runs`` view reads
(events, scalars, tensors, system), the lowest and highest finite value of each
scalar (name, split), and its lifecycle events (``run_started``,
``run_finished``/``run_failed``) and metric goals (``metric_defined``). A reader that
only lists runs (``open_store(path, runs_only=True)``, ``telemetry runs``) uses a digest instead of
reading that writer's segments, but only while the segment names it lists are
exactly the writer's live segments on disk: a segment written, merged or removed
later makes the digest stale, and the reader goes back to the segments, which stay
the source of truth. So does a resumed run (any attempt > 0): its views keep the
latest attempt of each step, which needs the rows. A missing or unreadable digest
costs only speed.

Listing 10,000 small runs read ~30,000 Parquet footers and loaded every segment;
with digests it reads one small JSON file per run (``benchmarks/store_scale.py``);
with the run index (``store.index``), which holds a copy of each digest, one file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from store.compaction import live_segments
from store.layout import TMP_PREFIX, read_regular
from store.location import RemotePath, StorePath
from store.schema import EventKind, Stream

DIGEST_DIR = "digests"
DIGEST_VERSION = 1
ACTIVITY_STREAMS = (Stream.EVENTS, Stream.SCALARS, Stream.TENSORS, Stream.SYSTEM)
"""The streams whose rows say how far a run got and when it was last seen."""
LIFECYCLE = (
    EventKind.RUN_STARTED,
    EventKind.RUN_FINISHED,
    EventKind.RUN_FAILED,
    EventKind.METRIC_DEFINED,
)
"""The events a digest keeps: those the ``runs`` view and ``telemetry runs`` read (its
best columns follow the metrics' goals, ``store.metrics``)."""


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


def digest_path(run_dir: StorePath, rank: int, attempt: int) -> StorePath:
    return run_dir / DIGEST_DIR / digest_name(rank, attempt)


def writer_segments(run_dir: StorePath, rank: int, attempt: int) -> dict[str, list[str]]:
    """The live segment names of one writer, per stream that has any (sorted)."""
    out: dict[str, list[str]] = {}
    for stream in Stream:
        live, _ = live_segments(run_dir / stream.value)
        names = sorted(p.name for p, s in live.items() if (s.rank, s.attempt) == (rank, attempt))
        if names:
            out[stream.value] = names
    return out


def write_digest(
    run_dir: StorePath, run_id: str, rank: int, attempt: int, activity: Activity
) -> StorePath:
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
    if isinstance(final, RemotePath):  # one PUT: atomic
        final.write_bytes(json.dumps(body).encode())
        return final
    final.parent.mkdir(exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(body))
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_digest(path: str | Path | RemotePath) -> Digest:
    """The digest at ``path``; ``ValueError`` saying why when it cannot be used
    (``FileNotFoundError`` when there is none).

    Checked before it is trusted: only a regular file is opened (a FIFO would block
    the reader), and every field must have its type and fit what the views store it
    as (int32 rank and attempt, int64 step, a timestamp a date can hold, finite
    scalar extremes, UTF-8 text), so a damaged or hand-made digest costs only speed:
    the writer's rows are read instead."""
    try:
        if isinstance(path, RemotePath):
            data = path.read_bytes(MAX_DIGEST_BYTES, what="a digest")
        else:
            data = read_regular(os.fspath(path), MAX_DIGEST_BYTES, what="a digest", grown=1)
        body = json.loads(data)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"not a readable digest ({type(e).__name__}: {e})") from e
    return digest_from_json(body)


def digest_from_json(body: Any) -> Digest:
    """The digest whose JSON text parsed to ``body`` (a digest file's, or the copy in
    the run index, ``store.index``), checked as ``read_digest`` says; ``ValueError``."""
    if not isinstance(body, dict) or body.get("version") != DIGEST_VERSION:
        raise ValueError(f"not a version {DIGEST_VERSION} digest")
    try:
        return _parse(body)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"a malformed digest ({type(e).__name__}: {e})") from e


MAX_DIGEST_BYTES = 64 << 20
"""A digest is a few kB (one entry per segment, lifecycle event and metric); a bigger
file is not one, and is not read into memory whole."""

_INT32 = (0, 2**31 - 1)  # rank, attempt: never negative
_INT64 = (-(2**63), 2**63 - 1)
_WALL_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)
"""Microseconds since the epoch of years 1 to 9999: what a timestamp column and a
Python datetime both hold."""
_LIFECYCLE_KINDS = frozenset(k.value for k in LIFECYCLE)


def _parse(body: dict[str, Any]) -> Digest:
    segments = body["segments"]
    if not isinstance(segments, dict):
        raise TypeError("segments must be an object")
    names: dict[str, list[str]] = {}
    for stream, files in segments.items():  # only compared with the names on disk
        if not isinstance(files, list) or not all(type(f) is str for f in files):
            raise TypeError(f"segments[{stream!r}] must be a list of file names")
        if files:
            names[stream] = sorted(files)
    first = _optional_int(body["first_us"], "first_us", _WALL_US)
    last = _optional_int(body["last_us"], "last_us", _WALL_US)
    if first is not None and last is not None and first > last:
        raise ValueError(f"first_us {first} is after last_us {last}")
    return Digest(
        run_id=_text(body["run_id"], "run_id"),
        rank=_int(body["rank"], "rank", _INT32),
        attempt=_int(body["attempt"], "attempt", _INT32),
        segments=names,
        first_us=first,
        last_us=last,
        max_step=_optional_int(body["max_step"], "max_step", _INT64),
        lifecycle=[_event(e) for e in _list(body["lifecycle"], "lifecycle")],
        metrics=[_metric(m) for m in _list(body["metrics"], "metrics")],
    )


def _event(e: Any) -> dict[str, Any]:
    kind = _text(e["kind"], "a lifecycle kind")
    if kind not in _LIFECYCLE_KINDS:
        raise ValueError(f"lifecycle kind {kind!r} is not one of {sorted(_LIFECYCLE_KINDS)}")
    return {
        "kind": kind,
        "payload": _text(e["payload"], "a lifecycle payload"),
        "wall_time": _int(e["wall_time"], "a lifecycle wall_time", _WALL_US),
    }


def _metric(m: Any) -> dict[str, Any]:
    lo, hi = _finite(m["min"], "a metric's min"), _finite(m["max"], "a metric's max")
    if lo > hi:
        raise ValueError(f"a metric's min {lo} is above its max {hi}")
    split = m["split"]
    return {
        "name": _text(m["name"], "a metric name"),
        "split": None if split is None else _text(split, "a metric split"),
        "min": lo,
        "max": hi,
    }


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{what} must be a list, got {type(value).__name__}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value.isascii():  # O(1): ASCII text (most of it) holds no lone surrogate
        value.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate: not UTF-8
    return value


def _int(value: Any, what: str, bounds: tuple[int, int]) -> int:
    if type(value) is not int:  # not a bool, a float or a numeric string
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} {value} is outside {bounds[0]}..{bounds[1]}")
    return value


def _optional_int(value: Any, what: str, bounds: tuple[int, int]) -> int | None:
    return None if value is None else _int(value, what, bounds)


def _finite(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}; a digest keeps finite values only")
    return float(value)


# -- as tables -------------------------------------------------------------------------

_LIFECYCLE_ROW = pa.struct(
    [("kind", pa.string()), ("payload", pa.string()), ("wall_time", pa.int64())]
)
_METRIC_ROW = pa.struct(
    [("name", pa.string()), ("split", pa.string()), ("min", pa.float64()), ("max", pa.float64())]
)
DIGEST_ROWS = pa.schema(
    [
        ("run_id", pa.string()),
        ("rank", pa.int32()),
        ("attempt", pa.int32()),
        ("first_us", pa.int64()),
        ("last_us", pa.int64()),
        ("max_step", pa.int64()),
        ("segments", pa.list_(pa.struct([("stream", pa.string()), ("name", pa.string())]))),
        ("lifecycle", pa.list_(_LIFECYCLE_ROW)),
        ("metrics", pa.list_(_METRIC_ROW)),
    ]
)
"""One row per digest: what the run index keeps of each (``store.index``), and what a
reader's ``runs`` view is built from (``digest_tables``)."""


def plausible(rows: pa.Table) -> bool:
    """Whether the ``DIGEST_ROWS`` columns of ``rows`` hold only what ``read_digest``
    lets through: wall times a timestamp can hold, ranks and attempts not negative,
    finite metric extremes in order (checked column-wise: rows from a file, not from
    checked digests)."""
    if rows.num_rows == 0:
        return True
    walls = (
        rows["first_us"],
        rows["last_us"],
        pc.struct_field(pc.list_flatten(rows["lifecycle"]), "wall_time"),
    )
    for wall in walls:
        lo, hi = pc.min_max(wall).values()
        if lo.is_valid and not (_WALL_US[0] <= lo.as_py() and hi.as_py() <= _WALL_US[1]):
            return False
    if any(pc.min(rows[c]).as_py() < 0 for c in ("rank", "attempt")):
        return False
    metrics = pc.list_flatten(rows["metrics"])
    lo, hi = pc.struct_field(metrics, "min"), pc.struct_field(metrics, "max")
    ordered = pc.and_(pc.and_(pc.is_finite(lo), pc.is_finite(hi)), pc.less_equal(lo, hi))
    if pc.any(pc.invert(ordered.fill_null(False))).as_py():
        return False
    kinds = pc.struct_field(pc.list_flatten(rows["lifecycle"]), "kind")
    known = pc.is_in(kinds, value_set=pa.array(sorted(_LIFECYCLE_KINDS)))
    return not pc.any(pc.invert(known)).as_py() and rows["run_id"].null_count == 0


def digest_rows(digests: list[Digest]) -> pa.Table:
    """``digests`` as ``DIGEST_ROWS``, one row each."""
    return pa.Table.from_pylist([digest_row(d) for d in digests], schema=DIGEST_ROWS)


def digest_row(d: Digest) -> dict[str, Any]:
    """One row of ``DIGEST_ROWS``."""
    return {
        "run_id": d.run_id,
        "rank": d.rank,
        "attempt": d.attempt,
        "first_us": d.first_us,
        "last_us": d.last_us,
        "max_step": d.max_step,
        "segments": [{"stream": s, "name": n} for s, names in d.segments.items() for n in names],
        "lifecycle": d.lifecycle,
        "metrics": d.metrics,
    }


@dataclass(frozen=True)
class DigestTables:
    """The tables of the ``runs`` view that digests stand in for (``analysis.store``):
    per writer how far it got and when it was seen, its lifecycle events, and its
    scalars' finite extremes."""

    writers: pa.Table
    lifecycle: pa.Table
    metrics: pa.Table


_WALL = pa.timestamp("us", tz="UTC")


def digest_tables(rows: pa.Table) -> DigestTables:
    """The ``DIGEST_ROWS`` ``rows`` as the tables the ``runs`` view reads: columns
    flattened with Arrow kernels, no row through Python (10,000 runs' digests)."""
    writers = pa.table(
        {
            "run_id": rows["run_id"],
            "rank": rows["rank"],
            "attempt": rows["attempt"],
            "steps": rows["max_step"],
            "first_seen": rows["first_us"].cast(_WALL),
            "last_seen": rows["last_us"].cast(_WALL),
        }
    )

    def flat(column: str) -> tuple[pa.Table, pa.StructArray]:
        lists = rows[column].combine_chunks()
        owner = rows.select(["run_id", "attempt"]).take(pc.list_parent_indices(lists))
        return owner, pc.list_flatten(lists)

    owner, events = flat("lifecycle")
    lifecycle = pa.table(
        {
            "run_id": owner["run_id"],
            "attempt": owner["attempt"],
            "kind": events.field("kind"),
            "payload": events.field("payload"),
            "wall_time": events.field("wall_time").cast(_WALL),
        }
    )
    owner, metrics = flat("metrics")
    extremes = pa.table(
        {
            "run_id": owner["run_id"],
            "name": metrics.field("name"),
            "split": metrics.field("split"),
            "lo": metrics.field("min"),
            "hi": metrics.field("max"),
        }
    )
    return DigestTables(writers, lifecycle, extremes)
