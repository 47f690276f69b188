"""Listing a store: the segments each run's views read, and what they skip and why.

Writers keep publishing while a store is read, and a compaction publishes a merged
file and then deletes the segments it covers. Each stream directory is listed once,
so a listing sees a compaction either before or after it, never half-way: the
covered segments are left out (``collector.compaction.split_covered``), and no row is
read twice. A file can still vanish between its listing and its reading; the reader
then lists that run again (see ``analysis.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from collector.compaction import split_covered
from collector.layout import SegmentName, parse_segment_name
from collector.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, STREAM_KEY, Stream

RESCANS = 8
"""Listings of one run taken at most while its files keep vanishing under the reader."""

REMOVED = "removed while the store was being read (by a compaction or a cleanup)"
EMPTY_RUN = (
    "an empty run directory: no segment published yet (a run starting now, or one "
    "killed before its first write)"
)


@dataclass(frozen=True)
class Unreadable:
    """A file in the store that the views leave out, and why."""

    path: Path
    reason: str


@dataclass
class RunListing:
    """What one run directory holds: segments to read per stream, and what to skip."""

    path: Path
    segments: dict[Stream, list[Path]] = field(default_factory=lambda: {s: [] for s in Stream})
    unreadable: list[Unreadable] = field(default_factory=list)

    def files(self) -> list[Path]:
        return [p for paths in self.segments.values() for p in paths]


class Vanished(Exception):
    """A listed file or directory disappeared before it was read."""


def list_store(root: Path) -> tuple[list[RunListing], list[Unreadable]]:
    """Every run directory under ``root``, and the stray files beside them."""
    runs: list[RunListing] = []
    strays: list[Unreadable] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            runs.append(list_run(entry))
        else:
            strays.append(Unreadable(entry, "a file where a run directory belongs"))
    return runs, strays


def list_run(run_dir: Path) -> RunListing:
    """List ``run_dir``, again while its files vanish; the last try skips what vanished."""
    for attempt in range(RESCANS):
        try:
            return _list_run(run_dir, final=attempt == RESCANS - 1)
        except Vanished:
            continue
    raise AssertionError("unreachable: the final listing does not raise")


def _list_run(run_dir: Path, *, final: bool) -> RunListing:
    listing = RunListing(run_dir)
    for entry in sorted(_listdir(run_dir, final=final)):
        if entry.name.startswith("."):
            continue  # .attempts and the like
        try:
            stream = Stream(entry.name)
        except ValueError:
            listing.unreadable.append(Unreadable(entry, "not a stream of this store"))
            continue
        named: dict[Path, SegmentName] = {}
        for path in sorted(_listdir(entry, final=final)):
            if path.name.startswith("."):
                continue  # a temporary file being written, or left by a crash
            seg = parse_segment_name(path.name)
            if seg is None:
                listing.unreadable.append(Unreadable(path, "not a segment file name"))
            else:
                named[path] = seg
        live, _covered = split_covered(named)  # one listing: never half a compaction
        for path in sorted(live):
            try:
                reason = check_segment(path, stream)
            except Vanished:
                if not final:
                    raise
                reason = REMOVED
            if reason:
                listing.unreadable.append(Unreadable(path, reason))
            else:
                listing.segments[stream].append(path)
    if not listing.files() and not listing.unreadable and run_dir.exists():
        listing.unreadable.append(Unreadable(run_dir, EMPTY_RUN))
    return listing


def _listdir(directory: Path, *, final: bool) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError as e:
        if final:
            return []  # gone for good: nothing to read there
        raise Vanished(directory) from e


def check_segment(path: Path, stream: Stream) -> str | None:
    """Why ``path`` cannot be read as a segment of ``stream``, or None if it can."""
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as e:  # truncated, garbage, permission: all mean "skip and say"
        if not path.exists():
            raise Vanished(path) from e
        return f"not a readable Parquet file ({type(e).__name__}: {e})"
    kv = schema.metadata or {}
    version = kv.get(SCHEMA_VERSION_KEY)
    if version is None:
        return "no telemetry schema version in its metadata"
    try:
        v = int(version)
    except ValueError:
        return f"schema version {version!r} is not a number"
    if v > SCHEMA_VERSION:
        return f"written with schema version {v}; this reader knows up to {SCHEMA_VERSION}"
    if kv.get(STREAM_KEY, stream.value.encode()) != stream.value.encode():
        return f"a {kv[STREAM_KEY].decode()!r} segment in the {stream.value!r} directory"
    if meta.num_rows == 0:
        return None
    missing = {"run_id", "step"} - set(schema.names)
    if missing:
        return f"missing envelope columns {sorted(missing)}"
    return None
