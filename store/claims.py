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

On object storage (``store.location``) there are no directories to create: a fresh
run id is one that no object starts with yet (its 32 random bits make a clash as
unlikely as on disk), and the attempt claim, the run's first object, is a conditional
PUT (``If-None-Match``), as exclusive as ``O_EXCL``.

The collector claims through ``collector.claims`` (with torch.distributed, rank 0
claims the run directory and tells the other ranks); ``telemetry import`` directly.
"""

from __future__ import annotations

import os
import secrets

from store import layout
from store.errors import ConfigError, StoreError
from store.layout import SegmentName, parse_segment_name
from store.location import RemotePath, StorePath, read_metadata, store_path
from store.schema import Stream

ATTEMPTS_DIR = ".attempts"


_BUCKETS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
"""URL schemes whose first path component is a bucket (or container) that must exist."""


def store_dir(root: str | os.PathLike[str] | RemotePath) -> StorePath:
    """The store directory ``root``, created if missing; ``StoreError`` if not writable.
    A URL's bucket must exist (it is never created: a typo would make a new one)."""
    path = store_path(root)
    if isinstance(path, RemotePath):
        return _remote_store(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the store directory {str(path)!r}: {e}") from e
    if not os.access(path, os.W_OK):
        raise StoreError(f"the store directory {str(path)!r} is not writable")
    return path


def _remote_store(path: RemotePath) -> RemotePath:
    scheme = path.url.partition("://")[0]
    try:
        if scheme in _BUCKETS:
            bucket = path.key.split("/", 1)[0]
            if not path.fs.exists(bucket):
                raise StoreError(
                    f"cannot use the store {path.url!r}: there is no bucket {bucket!r} "
                    "(or these credentials cannot see it, or the endpoint cannot be reached)"
                )
        else:
            path.fs.makedirs(path.key, exist_ok=True)
    except StoreError:
        raise
    except Exception as e:  # credentials, endpoint, network: all named the same way
        raise StoreError(f"cannot reach the store {path.url!r}: {type(e).__name__}: {e}") from e
    return path


def claim_run_dir(root: StorePath, name: str | None) -> str:
    """Create a fresh run directory under ``root``; its id."""
    for _ in range(8):
        run_id = layout.new_run_id(name)
        path = layout.run_dir(root, run_id)
        try:
            if isinstance(path, RemotePath):
                if path.exists():
                    continue
                return run_id  # claimed for good by its first attempt's claim
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"cannot create the run directory {str(path)!r}: {e}") from e
        return run_id
    raise StoreError(f"could not find a free run id under {str(root)!r} after 8 tries")


def existing_run_dir(root: StorePath, run_id: str) -> StorePath:
    path = layout.run_dir(root, run_id)
    if not path.is_dir():
        entries = root.iterdir() if root.is_dir() else []
        known = sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))
        listed = ", ".join(known[-5:]) if known else "none"
        raise ConfigError(
            f"resume={run_id!r}: there is no such run in {str(root)!r} "
            f"(latest runs there: {listed})"
        )
    return path


def claim_attempt(run_dir: StorePath, rank: int) -> int:
    """Reserve and return the next attempt number of ``rank`` in ``run_dir`` (0 if none)."""
    claims = run_dir / ATTEMPTS_DIR
    seen = [a for r, a in _claimed(claims) if r == rank]
    seen += [seg.attempt for _, seg in _segments(run_dir) if seg.rank == rank]
    attempt = max(seen) + 1 if seen else 0
    claims.mkdir(exist_ok=True)
    while True:
        try:
            _create(claims / f"{rank}-{attempt}")
        except FileExistsError:
            attempt += 1
            continue
        return attempt


def _create(path: StorePath) -> None:
    """Create the empty file ``path``; ``FileExistsError`` if it exists."""
    if isinstance(path, RemotePath):  # a token: a lost answer's retry knows its own PUT
        path.write_bytes(secrets.token_hex(16).encode(), exclusive=True)
        return
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))


def last_recorded_step(run_dir: StorePath, rank: int) -> int:
    """The highest ``step`` any segment of ``rank`` recorded (0 if none).

    Read from the Parquet footers' column statistics, not the data: one small read
    per segment file. Unreadable files are skipped (the reader lists them).
    """
    best = 0
    for path, seg in _segments(run_dir):
        if seg.rank != rank:
            continue
        try:
            meta = read_metadata(path)
            column = meta.schema.to_arrow_schema().get_field_index("step")
            for i in range(meta.num_row_groups):
                stats = meta.row_group(i).column(column).statistics
                if stats is not None and stats.has_min_max:
                    best = max(best, int(stats.max))
        except (OSError, ValueError, IndexError):  # torn by a crash, or not ours
            continue
    return best


def _claimed(claims: StorePath) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    if claims.is_dir():
        for path in claims.iterdir():
            rank, _, attempt = path.name.partition("-")
            if rank.isdigit() and attempt.isdigit():
                out.append((int(rank), int(attempt)))
    return out


def _segments(run_dir: StorePath) -> list[tuple[StorePath, SegmentName]]:
    found: list[tuple[StorePath, SegmentName]] = []
    for stream in Stream:
        directory = run_dir / stream.value
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            seg = parse_segment_name(path.name)
            if seg is not None:
                found.append((path, seg))
    return found
