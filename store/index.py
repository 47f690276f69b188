"""The run index: one line per closing writer at the store root, so listing runs reads
one file instead of every run's digests and segment directories.

``<root>/.index/runs.jsonl`` (hidden: older readers skip it like a temporary file) is
append-only. A writer that closes cleanly appends one JSON line after its digest
(``store.digest``; ``store.indexing``): the digest itself, its SHA-256, and, when
the run was quiet at that moment, the run's *state*: the modification time of the
run directory, of each stream directory in it and of each digest, and the digest
hash of every writer with live segments. A reader listing runs
(``store.scan.list_store(trust_digests=True)``) uses a state only while every one of
those still has its recorded time: any segment published, merged or deleted since,
a new stream, a digest damaged or removed, changes one. Then the run is listed from
the digests in the index, one ``stat`` per directory and digest; otherwise (no
line, a stale state, a resumed run, a digest hash not in the index) it is listed as
before, from its digests and segments, which stay the truth. A line whose run
directory is gone is ignored.

Concurrent writers: each line is one ``write`` on a file opened ``O_APPEND``, so
lines from several processes never interleave on a local filesystem; each starts
with a newline, so a line torn by a crash (or a full disk) ends there and costs only
itself. Readers skip every line that is not a whole, valid record. Not fsynced: a
line lost in a power cut makes its run slower to list, never wrong.

Timestamps have a granularity (a kernel tick on older Linux, a second on some
filesystems): a change within the same tick as the recorded time would go unseen. So
the writer lists the run only once its directories' times are ``SETTLE_NS`` old
(``store.indexing``; a change after that listing gets a later time), and records no
state on a filesystem whose times are whole seconds. On a network filesystem whose
clock runs behind the writer's, a change right after a close may go unseen until
the next one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.digest import DIGEST_DIR, Digest, digest_from_json
from store.layout import read_regular
from store.schema import Stream

log = logging.getLogger(__name__)

INDEX_DIR = ".index"
INDEX_FILE = "runs.jsonl"
INDEX_VERSION = 1
MAX_INDEX_BYTES = 1 << 30
"""~100,000 runs' lines; a bigger file is not read (runs are listed without it)."""
_STATES_TRIED = 4  # states of one run a reader checks, newest first

STREAM_DIRS = frozenset(s.value for s in Stream)
"""The directories of a run whose times a state records, with the run's own ("") and
its digests (``digests/<name>``)."""


def index_path(root: Path) -> Path:
    return root / INDEX_DIR / INDEX_FILE


# -- writing ---------------------------------------------------------------------------


def append_line(root: Path, line: dict[str, Any]) -> None:
    """One ``write`` of ``\\n<json>\\n`` on the index opened ``O_APPEND``."""
    path = index_path(root)
    path.parent.mkdir(exist_ok=True)
    data = b"\n" + json.dumps(line, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a full disk: the torn line ends at the next one's "\n"
            raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes", str(path))
    finally:
        os.close(fd)


def digest_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- reading -------------------------------------------------------------------------


@dataclass
class RunIndex:
    """The lines of an index, by run: digest bodies by (rank, attempt, sha), states
    in the order they were appended."""

    bodies: dict[str, dict[tuple[int, int, str], dict[str, Any]]] = field(default_factory=dict)
    states: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read_index(root: Path) -> RunIndex:
    """The valid lines of ``root``'s index (none when there is no index, or it cannot be
    read); torn, damaged or unknown lines are skipped."""
    index = RunIndex()
    try:
        # up to its size at open: what is appended meanwhile is read next time
        data = read_regular(os.fspath(index_path(root)), MAX_INDEX_BYTES, what="a run index")
    except OSError:
        return index
    for raw in data.split(b"\n"):
        if not raw:
            continue
        try:
            line = json.loads(raw)
            if not isinstance(line, dict) or line.get("version") != INDEX_VERSION:
                continue
            run_id, rank, attempt, sha = line["run_id"], line["rank"], line["attempt"], line["sha"]
            body, state = line["digest"], line["state"]
        except (ValueError, KeyError, RecursionError):  # torn or damaged: that line only
            continue
        if not (
            type(run_id) is str
            and type(rank) is int
            and type(attempt) is int
            and type(sha) is str
            and isinstance(body, dict)
        ):
            continue
        index.bodies.setdefault(run_id, {})[(rank, attempt, sha)] = body
        if _valid_state(state):
            index.states.setdefault(run_id, []).append(state)
    return index


def _valid_state(state: Any) -> bool:
    if not isinstance(state, dict):
        return False
    dirs, writers = state.get("dirs"), state.get("writers")
    return (
        isinstance(dirs, dict)
        and "" in dirs
        and all(_known(k) for k in dirs)
        and all(type(t) is int for t in dirs.values())
        and isinstance(writers, dict)
        and bool(writers)
        and all(type(s) is str for s in writers.values())
    )


def _known(key: str) -> bool:
    """A key of a state's times: the run directory (""), a stream directory, or a
    digest (``digests/<name>``, never a way out of the run directory)."""
    head, sep, name = key.partition("/")
    if not sep:
        return key == "" or key in STREAM_DIRS
    return head == DIGEST_DIR and name not in ("", ".", "..") and not {"/", "\0"} & set(name)


def indexed_digests(index: RunIndex, run_dir: Path) -> list[Digest] | None:
    """The digests of every writer of ``run_dir`` when a recorded state of it is
    current; None when the run must be listed from its directories."""
    run_id = run_dir.name
    states = index.states.get(run_id)
    if not states:
        return None
    for state in reversed(states[-_STATES_TRIED:]):
        if _current(run_dir, state["dirs"]):
            return _digests(index.bodies.get(run_id, {}), run_id, state["writers"])
    return None


def _current(run_dir: Path, dirs: dict[str, int]) -> bool:
    base = os.fspath(run_dir)
    for name, recorded in dirs.items():
        try:
            st = os.stat(os.path.join(base, name) if name else base, follow_symlinks=False)
        except OSError:
            return False
        kind_ok = stat.S_ISREG(st.st_mode) if "/" in name else stat.S_ISDIR(st.st_mode)
        if st.st_mtime_ns != recorded or not kind_ok:
            return False
    return True


def _digests(
    bodies: dict[tuple[int, int, str], dict[str, Any]], run_id: str, writers: dict[str, str]
) -> list[Digest] | None:
    out = []
    for key, sha in writers.items():
        rank_text, _, attempt_text = key.partition("-")
        if not (rank_text.isdigit() and attempt_text.isdigit()):
            return None
        rank, attempt = int(rank_text), int(attempt_text)
        body = bodies.get((rank, attempt, sha))
        if body is None or attempt:  # a resumed run's views need its rows
            return None
        try:
            d = digest_from_json(body)
        except ValueError:
            return None  # listed from its directories, which name the problem
        if (d.run_id, d.rank, d.attempt) != (run_id, rank, attempt):
            return None
        out.append(d)
    return sorted(out, key=lambda d: (d.rank, d.attempt))


def indexed_runs(root: Path, run_dirs: Iterable[Path]) -> dict[Path, list[Digest]]:
    """The runs among ``run_dirs`` that the index lists (run directory -> digests)."""
    index = read_index(root)
    if not index.states:
        return {}
    out = {}
    for run_dir in run_dirs:
        digests = indexed_digests(index, run_dir)
        if digests is not None:
            out[run_dir] = digests
    return out
