"""Adding a closed writer to the store's run index (``store.index``).

After its compaction and digest, a closing writer appends one line: its digest and,
when the run is quiet, the run's state, so that listing runs takes the index's word
for the run until one of its directories changes. Separate from ``store.index``
because recording a state lists the run the way a reader does (``store.scan``),
and ``store.scan`` reads the index.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from store.digest import DIGEST_DIR, digest_path
from store.index import INDEX_VERSION, STREAM_DIRS, append_line, digest_hash
from store.location import RemotePath, StorePath
from store.scan import list_run

SETTLE_NS = 20_000_000
"""How old the run's directory times must be before the writer lists it: over a
kernel tick (at most 10 ms) on filesystems with sub-second times."""
_TRIES = 3  # listings of a run that keeps changing under the closing writer


def record_writer(run_dir: StorePath, rank: int, attempt: int) -> bool:
    """Append the index line of a closed writer whose digest is written; True when it
    also records the run's state (the run is listed from the index until it changes).

    Call after compaction and ``write_digest``; ``OSError`` when the digest cannot be
    read or the line cannot be written (only listing gets slower). A store on object
    storage has no run index (no append, no directory times): False, nothing written."""
    if isinstance(run_dir, RemotePath):
        return False
    data = digest_path(run_dir, rank, attempt).read_bytes()
    body = json.loads(data)
    state = _settled_state(run_dir)
    line = {
        "version": INDEX_VERSION,
        "run_id": body["run_id"],
        "rank": rank,
        "attempt": attempt,
        "sha": digest_hash(data),
        "digest": body,
        "state": state,
    }
    append_line(run_dir.parent, line)
    return state is not None


def _settled_state(run_dir: Path) -> dict[str, Any] | None:
    """The run's directory times and its writers' digest hashes, listed after the
    times settled and unchanged across the listing; None when the run is not wholly
    described by current digests (a writer still running, junk, a resumed run)."""
    for _ in range(_TRIES):
        before = _dir_times(run_dir)
        if before is None or not before:
            return None
        wait_ns = max(before.values()) + SETTLE_NS - time.time_ns()
        if wait_ns > 1_000_000_000:
            return None  # times from a clock far ahead of ours: cannot tell when settled
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        listing = list_run(run_dir, trust_digests=True)
        writers = {
            f"{d.rank}-{d.attempt}": digest_hash(
                digest_path(run_dir, d.rank, d.attempt).read_bytes()
            )
            for d in listing.digests
        }
        if _dir_times(run_dir) != before:
            continue
        if listing.unreadable or listing.files() or not writers:
            return None
        return {"dirs": before, "writers": writers}
    return None


def _dir_times(run_dir: Path) -> dict[str, int] | None:
    """``st_mtime_ns`` of the run directory (""), of its stream directories, and of
    each digest (``digests/<name>``: one damaged in place changes no directory, and a
    digest is its writer's truth); None on a filesystem with whole-second times."""
    base = os.fspath(run_dir)
    times = {"": os.stat(base).st_mtime_ns}
    with os.scandir(base) as entries:
        for entry in entries:
            if entry.name in STREAM_DIRS and entry.is_dir(follow_symlinks=False):
                times[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
    try:
        with os.scandir(os.path.join(base, DIGEST_DIR)) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                    key = f"{DIGEST_DIR}/{entry.name}"
                    times[key] = entry.stat(follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        pass  # no digest: no state either (``_settled_state``)
    if all(t % 1_000_000_000 == 0 for t in times.values()):
        return None
    return times
