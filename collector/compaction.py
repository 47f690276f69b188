"""Compaction: merge the small segments of one (run, rank, attempt) into one per stream.

Crash safety comes from the names (see ``collector.layout``): the merged file
``<rank>-<attempt>-<first>_<last>.parquet`` is published atomically *before* the
segments it covers are deleted, and readers ignore covered segments. A crash at
any instant leaves either the originals, or the merged file plus some covered
leftovers: no row is lost and none is read twice. A later compaction deletes the
leftovers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from collector.layout import SegmentName, parse_segment_name
from collector.schema import Stream
from collector.segments import write_segment

log = logging.getLogger(__name__)


K = TypeVar("K")


@dataclass(frozen=True)
class CompactionResult:
    streams: int = 0
    segments_merged: int = 0
    files_removed: int = 0


def live_segments(directory: Path) -> tuple[dict[Path, SegmentName], list[Path]]:
    """Published segments of a stream directory that no compacted segment covers.

    Returns ``(live, covered)``: covered files are safe to delete.
    """
    named: dict[Path, SegmentName] = {}
    if directory.is_dir():
        for path in directory.iterdir():
            seg = parse_segment_name(path.name)
            if seg is not None:
                named[path] = seg
    return split_covered(named)


def split_covered(
    named: dict[K, SegmentName],
) -> tuple[dict[K, SegmentName], list[K]]:
    """``(live, covered)`` of segments listed once (``live_segments`` lists the directory);
    keyed by path or by file name, as given."""
    compacted = [s for s in named.values() if s.compacted]
    live: dict[K, SegmentName] = {}
    covered: list[K] = []
    for path, seg in named.items():
        if any(c.covers(seg) for c in compacted):
            covered.append(path)
        else:
            live[path] = seg
    return live, covered


def claims(named: dict[K, SegmentName]) -> dict[K, list[K]]:
    """Each compacted segment that covers others listed beside it, and those it covers.

    Normally empty: a compaction deletes what it merged right after publishing. A
    claim over files still present is a crash's leftovers, or a file that only looks
    like a compacted segment (``0-0-000000_999999.parquet`` would hide every segment
    of that writer); readers check it (``analysis.scan``) before they trust it."""
    compacted = [(k, s) for k, s in named.items() if s.compacted]
    out: dict[K, list[K]] = {}
    for key, seg in compacted:
        covered = [k for k, other in named.items() if seg.covers(other)]
        if covered:
            out[key] = covered
    return out


def compact_run(
    run_dir: Path, *, rank: int | None = None, attempt: int | None = None
) -> CompactionResult:
    """Merge each stream's live segments per (rank, attempt) of a run that has stopped writing.

    Only call this for writers that are closed: a segment published during the merge
    would be left out of it (still readable, merely not merged).
    """
    streams = merged = removed = 0
    for stream in Stream:
        directory = run_dir / stream.value
        live, covered = live_segments(directory)
        groups: dict[tuple[int, int], dict[Path, SegmentName]] = {}
        for path, seg in live.items():
            if (rank is None or seg.rank == rank) and (attempt is None or seg.attempt == attempt):
                groups.setdefault((seg.rank, seg.attempt), {})[path] = seg
        for (r, a), segs in groups.items():
            if len(segs) < 2:
                continue
            ordered = sorted(segs.items(), key=lambda kv: kv[1])
            tables = [pq.read_table(p) for p, _ in ordered]
            table = pa.concat_tables(tables).sort_by("seq")
            name = SegmentName(r, a, ordered[0][1].first, max(s.last for _, s in ordered))
            write_segment(table, directory, name.filename())
            covered.extend(p for p, _ in ordered)
            streams += 1
            merged += len(ordered)
        for path in covered:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return CompactionResult(streams, merged, removed)
