"""Listing a store: the segments each run's views read, and what they skip and why.

Writers keep publishing while a store is read, and a compaction publishes a merged
file and then deletes the segments it covers. Each stream directory is listed once,
so a listing sees a compaction either before or after it, never half-way: the
covered segments are left out (``collector.compaction.split_covered``), and no row is
read twice. A file can still vanish between its listing and its reading; the reader
then lists that run again (see ``analysis.store``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from collector.compaction import split_covered
from collector.digest import DIGEST_DIR, Digest, digest_name, read_digest
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
    # Writers listed by a current digest (only with trust_digests): their segments are
    # not in ``segments``.
    digests: list[Digest] = field(default_factory=list)

    def files(self) -> list[Path]:
        return [p for paths in self.segments.values() for p in paths]


class Vanished(Exception):
    """A listed file or directory disappeared before it was read."""


def list_store(
    root: Path, *, trust_digests: bool = False
) -> tuple[list[RunListing], list[Unreadable]]:
    """Every run directory under ``root``, and the stray files beside them.

    ``trust_digests``: a writer whose digest matches its live segments
    (``collector.digest``) is listed by its digest, and its segments are neither
    checked nor returned (listing runs only)."""
    runs: list[RunListing] = []
    strays: list[Unreadable] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            runs.append(list_run(entry, trust_digests=trust_digests))
        else:
            strays.append(Unreadable(entry, "a file where a run directory belongs"))
    return runs, strays


def list_run(run_dir: Path, *, trust_digests: bool = False) -> RunListing:
    """List ``run_dir``, again while its files vanish; the last try skips what vanished."""
    for attempt in range(RESCANS):
        try:
            return _list_run(run_dir, final=attempt == RESCANS - 1, trust_digests=trust_digests)
        except Vanished:
            continue
    raise AssertionError("unreachable: the final listing does not raise")


_STREAMS = {s.value: s for s in Stream}


def _list_run(run_dir: Path, *, final: bool, trust_digests: bool) -> RunListing:
    # Names and strings, not Paths, until a file is kept: listing 10,000 runs is mostly
    # Python overhead per name (``benchmarks/store_scale.py``).
    listing = RunListing(run_dir)
    base = os.fspath(run_dir)
    live_by_stream: dict[Stream, dict[str, SegmentName]] = {}
    for name in sorted(_listdir(base, final=final)):
        if name.startswith(".") or name == DIGEST_DIR:
            continue  # .attempts and the like; digests are read per writer below
        stream = _STREAMS.get(name)
        if stream is None:
            listing.unreadable.append(Unreadable(run_dir / name, "not a stream of this store"))
            continue
        named: dict[str, SegmentName] = {}
        for file in sorted(_listdir(f"{base}{os.sep}{name}", final=final)):
            if file.startswith("."):
                continue  # a temporary file being written, or left by a crash
            seg = parse_segment_name(file)
            if seg is None:
                listing.unreadable.append(
                    Unreadable(run_dir / name / file, "not a segment file name")
                )
            else:
                named[file] = seg
        live_by_stream[stream], _covered = split_covered(named)  # never half a compaction
    covered = _current_digests(base, live_by_stream, listing) if trust_digests else {}
    listing.digests = list(covered.values())
    for stream, live in live_by_stream.items():
        for file in sorted(live):
            if (live[file].rank, live[file].attempt) in covered:
                continue  # listed by its writer's digest
            path = run_dir / stream.value / file
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
    if not listing.files() and not listing.unreadable and not covered and run_dir.exists():
        listing.unreadable.append(Unreadable(run_dir, EMPTY_RUN))
    return listing


def _current_digests(
    run_dir: str, live: dict[Stream, dict[str, SegmentName]], listing: RunListing
) -> dict[tuple[int, int], Digest]:
    """The digests that still describe their writer: the live segments of that (rank,
    attempt) are exactly the ones the digest lists, in every stream. None for a resumed
    run: its views keep the latest attempt of each step, which takes the rows. Only the
    digests of writers with live segments are read (one open each, no listing)."""
    on_disk: dict[tuple[int, int], dict[str, list[str]]] = {}
    for stream, segments in live.items():
        for file, seg in segments.items():
            writer = on_disk.setdefault((seg.rank, seg.attempt), {})
            writer.setdefault(stream.value, []).append(file)
    if any(attempt for _, attempt in on_disk):
        return {}
    out: dict[tuple[int, int], Digest] = {}
    for (rank, attempt), found in on_disk.items():
        path = os.path.join(run_dir, DIGEST_DIR, digest_name(rank, attempt))  # no Path: speed
        try:
            d = read_digest(path)
        except FileNotFoundError:
            continue  # a writer still running, killed, or from before digests
        except ValueError as e:  # only a slower listing: the segments are read instead
            listing.unreadable.append(Unreadable(Path(path), str(e)))
            continue
        current = d.segments == {stream: sorted(files) for stream, files in found.items()}
        if current and (d.rank, d.attempt) == (rank, attempt):
            out[(rank, attempt)] = d
    return out


def _listdir(directory: str, *, final: bool) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError as e:
        if final:
            return []  # gone for good: nothing to read there
        raise Vanished(Path(directory)) from e


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
