"""Attempts: every (run, rank) start claims a number, a resumed run appends the next one.

A run restarted from a checkpoint writes into the same run directory as a new
*attempt* (segment names ``<rank>-<attempt>-<seq>.parquet``); nothing already
written is touched, and the views keep the latest attempt of every step. The number
is claimed by creating ``.attempts/<rank>-<attempt>`` exclusively (``O_EXCL``), so
two processes that resume the same rank at once never share one and never
overwrite each other's segments. Hidden, like temporary files: readers skip it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from collector.layout import SegmentName, parse_segment_name
from collector.schema import Stream

ATTEMPTS_DIR = ".attempts"


def claim_attempt(run_dir: Path, rank: int) -> int:
    """Reserve and return the next attempt number of ``rank`` in ``run_dir`` (0 if none)."""
    claims = run_dir / ATTEMPTS_DIR
    seen = [a for r, a in _claimed(claims) if r == rank]
    seen += [seg.attempt for _, seg in _segments(run_dir) if seg.rank == rank]
    attempt = max(seen) + 1 if seen else 0
    claims.mkdir(exist_ok=True)
    while True:
        try:
            fd = os.open(claims / f"{rank}-{attempt}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            attempt += 1
            continue
        os.close(fd)
        return attempt


def last_recorded_step(run_dir: Path, rank: int) -> int:
    """The highest ``step`` any segment of ``rank`` recorded (0 if none).

    Read from the Parquet footers' column statistics, not the data: one small read
    per segment file. Unreadable files are skipped (the reader lists them).
    """
    best = 0
    for path, seg in _segments(run_dir):
        if seg.rank != rank:
            continue
        try:
            meta = pq.read_metadata(path)
            column = meta.schema.to_arrow_schema().get_field_index("step")
            for i in range(meta.num_row_groups):
                stats = meta.row_group(i).column(column).statistics
                if stats is not None and stats.has_min_max:
                    best = max(best, int(stats.max))
        except (OSError, ValueError, IndexError):  # torn by a crash, or not ours
            continue
    return best


def _claimed(claims: Path) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    if claims.is_dir():
        for path in claims.iterdir():
            rank, _, attempt = path.name.partition("-")
            if rank.isdigit() and attempt.isdigit():
                out.append((int(rank), int(attempt)))
    return out


def _segments(run_dir: Path) -> list[tuple[Path, SegmentName]]:
    found: list[tuple[Path, SegmentName]] = []
    for stream in Stream:
        directory = run_dir / stream.value
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            seg = parse_segment_name(path.name)
            if seg is not None:
                found.append((path, seg))
    return found
