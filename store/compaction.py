"""Compaction: merge the small segments of one (run, rank, attempt) into one per stream.

Crash safety comes from the names (see ``store.layout``): the merged file
``<rank>-<attempt>-<first>_<last>.parquet`` is published atomically *before* the
segments it covers are deleted, and readers ignore covered segments. A crash at
any instant leaves either the originals, or the merged file plus some covered
leftovers: no row is lost and none is read twice. A later compaction deletes the
leftovers. On object storage the same order holds: the merged object is PUT whole
before the covered ones are deleted. Readers trust a merged file's name only as far as its rows go
(``claim_problem``): one that does not hold a segment it claims hides nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from store.layout import SegmentName, parse_segment_name
from store.location import StorePath, read_table
from store.schema import Stream
from store.segments import write_segment

log = logging.getLogger(__name__)


K = TypeVar("K")

STEP_ORDER = [("step", "ascending"), ("seq", "ascending")]
"""The order of a merged file's rows: by step, so that its row groups hold disjoint
step ranges a reader's filter on ``step`` skips by their statistics; then by ``seq``,
the order they were written in. Row order means nothing to the views (``seq`` values
are kept: "latest" is the highest ``seq``, never a position in the file)."""


@dataclass(frozen=True)
class CompactionResult:
    streams: int = 0
    segments_merged: int = 0
    files_removed: int = 0


def live_segments(directory: StorePath) -> tuple[dict[StorePath, SegmentName], list[StorePath]]:
    """Published segments of a stream directory that no compacted segment covers.

    Returns ``(live, covered)``: covered files are safe to delete. A compacted file
    that does not hold the rows of a segment it claims (``claim_problem``: junk named
    ``0-0-000000_999999.parquet``) is neither: it covers nothing, is not merged, and
    is left for readers to name.
    """
    named: dict[StorePath, SegmentName] = {}
    if directory.is_dir():
        for path in directory.iterdir():
            seg = parse_segment_name(path.name)
            if seg is not None:
                named[path] = seg
    for compacted, claimed in claims(named).items():
        try:
            unproven = claim_problem(compacted, claimed)
        except FileNotFoundError:
            unproven = "gone"
        if unproven is not None:
            del named[compacted]
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
    of that writer); readers check it (``store.scan``) before they trust it."""
    compacted = [(k, s) for k, s in named.items() if s.compacted]
    out: dict[K, list[K]] = {}
    for key, seg in compacted:
        covered = [k for k, other in named.items() if seg.covers(other)]
        if covered:
            out[key] = covered
    return out


def claim_problem(compacted: StorePath, covered: list[StorePath]) -> str | None:
    """Why ``compacted`` must not hide ``covered`` (segments its name claims that are
    still beside it), or None when it holds every row of each: every ``seq`` (unique
    per writer). A crash between publishing a merged file and deleting what it merged
    leaves exactly that; a file that claims more than it holds (junk named
    ``0-0-000000_999999.parquet``) must not hide real segments. Reads the ``seq``
    column of each file, which happens only when a claim covers files still present.

    A covered file that cannot be read or has vanished (the compaction that published
    ``compacted`` deleting it) is no evidence either way. ``FileNotFoundError`` when
    ``compacted`` itself is gone."""
    try:
        held = _seqs(compacted)
    except FileNotFoundError:
        raise
    except Exception as e:  # whatever cannot be read holds nothing
        return (
            f"claims to merge {_few([p.name for p in covered])} but cannot be read "
            f"({type(e).__name__}: {e}): not read; the segments it claims are read instead"
        )
    lacking = []
    for path in covered:
        try:
            seqs = _seqs(path)
        except Exception:  # FileNotFoundError included: see above
            continue
        if len(seqs) and not pc.all(pc.is_in(seqs, value_set=held)).as_py():
            lacking.append(path.name)
    if not lacking:
        return None
    return (
        f"claims to merge {_few(lacking)} but does not hold their rows: not read; the "
        "segments it claims are read instead"
    )


def _seqs(path: StorePath) -> pa.Array:
    try:
        return read_table(path, columns=["seq"])["seq"].combine_chunks()
    except Exception as e:
        if not path.exists():
            raise FileNotFoundError(path) from e
        raise


def _few(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def compact_run(
    run_dir: StorePath, *, rank: int | None = None, attempt: int | None = None
) -> CompactionResult:
    """Merge each stream's live segments per (rank, attempt) of a run that has stopped writing.

    Only call this for writers that are closed: a segment published during the merge
    would be left out of it (still readable, merely not merged).
    """
    streams = merged = removed = 0
    for stream in Stream:
        directory = run_dir / stream.value
        live, covered = live_segments(directory)
        groups: dict[tuple[int, int], dict[StorePath, SegmentName]] = {}
        for path, seg in live.items():
            if (rank is None or seg.rank == rank) and (attempt is None or seg.attempt == attempt):
                groups.setdefault((seg.rank, seg.attempt), {})[path] = seg
        for (r, a), segs in groups.items():
            if len(segs) < 2:
                continue
            ordered = sorted(segs.items(), key=lambda kv: kv[1])
            tables = [read_table(p) for p, _ in ordered]
            table = pa.concat_tables(tables).sort_by(STEP_ORDER)
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
