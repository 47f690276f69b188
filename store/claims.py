"""Claims: where a writer writes, taken atomically so that no two writers share it.

- A fresh run claims a new run directory (``mkdir``, which fails if it exists; ids
  carry 32 random bits, a clash draws again).
- Every (run, rank) start then claims an *attempt* number: 0 for a fresh run, one
  past every attempt the rank has written or claimed for a resumed one. A run
  restarted from a checkpoint (``resume=RUN_ID``) thus appends segments named
  ``<rank>-<attempt>-<seq>.parquet``; nothing already written is touched, and the
  views keep the latest attempt of every step. The number is claimed by creating
  ``.attempts/<rank>-<attempt>`` exclusively (``O_EXCL``), so two processes that
  resume the same rank at once never overwrite each other's segments. Hidden, like
  temporary files: readers skip it.

The collector claims through ``collector.claims`` (with torch.distributed, rank 0
claims the run directory and tells the other ranks); ``telemetry import`` directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from store import layout
from store.errors import ConfigError, StoreError
from store.layout import SegmentName, parse_segment_name
from store.schema import Stream

ATTEMPTS_DIR = ".attempts"


def store_dir(root: str | os.PathLike[str]) -> Path:
    """The store directory ``root``, created if missing; ``StoreError`` if not writable."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the store directory {str(path)!r}: {e}") from e
    if not os.access(path, os.W_OK):
        raise StoreError(f"the store directory {str(path)!r} is not writable")
    return path


def claim_run_dir(root: Path, name: str | None) -> str:
    """Create a fresh run directory under ``root``; its id."""
    for _ in range(8):
        run_id = layout.new_run_id(name)
        path = layout.run_dir(root, run_id)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"cannot create the run directory {str(path)!r}: {e}") from e
        return run_id
    raise StoreError(f"could not find a free run id under {str(root)!r} after 8 tries")


def existing_run_dir(root: Path, run_id: str) -> Path:
    path = layout.run_dir(root, run_id)
    if not path.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        listed = ", ".join(known[-5:]) if known else "none"
        raise ConfigError(
            f"resume={run_id!r}: there is no such run in {str(root)!r} "
            f"(latest runs there: {listed})"
        )
    return path


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
