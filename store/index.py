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

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc  # noqa: F401  # pa.ipc

from store.digest import DIGEST_DIR, DIGEST_ROWS, digest_from_json, digest_row, plausible
from store.layout import TMP_PREFIX, read_regular
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

SNAPSHOT_FILE = "runs.arrow"
SNAPSHOT_VERSION = 1
_SNAPSHOT_KEY = b"telemetry.index"

INDEX_LINES = pa.schema(
    [
        *DIGEST_ROWS,
        ("sha", pa.string()),
        ("valid", pa.bool_()),  # the digest parsed, and names the line's run and writer
        ("state_dirs", pa.list_(pa.struct([("key", pa.string()), ("mtime_ns", pa.int64())]))),
        ("state_writers", pa.list_(pa.struct([("writer", pa.string()), ("sha", pa.string())]))),
    ]
)
"""One row per valid line of the index, in file order: the line's run, rank and
attempt, its digest (``DIGEST_ROWS``; empty where ``valid`` is false) and its state
(null where the line has none, or a malformed one)."""


@dataclass
class RunIndex:
    """The valid lines of an index (``INDEX_LINES``)."""

    lines: pa.Table = field(default_factory=INDEX_LINES.empty_table)


def read_index(root: Path) -> RunIndex:
    """The valid lines of ``root``'s index (none when there is no index, or it cannot be
    read); torn, damaged or unknown lines are skipped.

    Through the snapshot (``<root>/.index/runs.arrow``): the lines parsed by an earlier
    reader, in Arrow's file format, with the length of the index they cover and a hash
    of those bytes. While the index has that length and time, the snapshot is its
    lines and the index is not read; when lines were appended, only they are parsed
    (the covered bytes hashed to check they are still the same); otherwise all are.
    A reader that parsed lines writes a new snapshot (atomically; a reader that cannot
    write leaves it). Any problem with the snapshot costs only speed: the index is the
    truth."""
    path = os.fspath(index_path(root))
    try:
        st = os.stat(path)
    except OSError:
        return RunIndex()
    snapshot = _read_snapshot(root)
    if snapshot is not None and snapshot.unchanged(st):
        return RunIndex(snapshot.lines)
    try:
        # up to its size at open: what is appended meanwhile is read next time
        data = read_regular(path, MAX_INDEX_BYTES, what="a run index")
    except OSError:
        return RunIndex()
    covered = data.rfind(b"\n") + 1  # whole lines only: a line being appended is read later
    start, parts = 0, []
    if snapshot is not None and snapshot.covers(data):
        start, parts = snapshot.covered, [snapshot.lines]
    if covered > start or not parts:
        parts.append(_parse_lines(data[start:covered]))
        lines = pa.concat_tables(parts)
        _write_snapshot(root, lines, data[:covered], st)
    else:
        lines = parts[0]
    return RunIndex(lines)


def _parse_lines(data: bytes) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in INDEX_LINES.names}
    for raw in data.split(b"\n"):
        if raw:
            line = _parse_line(raw)
            if line is not None:
                for name, value in line.items():
                    columns[name].append(value)
    return pa.table(columns, schema=INDEX_LINES)


_NO_DIGEST: dict[str, Any] = {"first_us": None, "last_us": None, "max_step": None}
_NO_DIGEST |= {"segments": [], "lifecycle": [], "metrics": []}


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """A line as a row of ``INDEX_LINES``; None for a torn, damaged or unknown one."""
    try:
        line = json.loads(raw)
        if not isinstance(line, dict) or line.get("version") != INDEX_VERSION:
            return None
        run_id, rank, attempt, sha = line["run_id"], line["rank"], line["attempt"], line["sha"]
        body, state = line["digest"], line["state"]
    except (ValueError, KeyError, RecursionError):  # torn or damaged: that line only
        return None
    if not (
        type(run_id) is str
        and type(rank) is int
        and type(attempt) is int
        and 0 <= rank < 2**31
        and 0 <= attempt < 2**31
        and type(sha) is str
        and isinstance(body, dict)
    ):
        return None
    if not (_utf8(run_id) and _utf8(sha)):  # a lone surrogate: Arrow holds UTF-8
        return None
    try:
        d = digest_from_json(body)
    except ValueError:
        row, valid = dict(_NO_DIGEST), False
    else:
        row = digest_row(d)
        valid = (d.run_id, d.rank, d.attempt) == (run_id, rank, attempt)
    row |= {"run_id": run_id, "rank": rank, "attempt": attempt, "sha": sha, "valid": valid}
    if _valid_state(state):
        row["state_dirs"] = [{"key": k, "mtime_ns": t} for k, t in state["dirs"].items()]
        row["state_writers"] = [{"writer": w, "sha": s} for w, s in state["writers"].items()]
    else:
        row["state_dirs"] = row["state_writers"] = None
    return row


def _valid_state(state: Any) -> bool:
    if not isinstance(state, dict):
        return False
    dirs, writers = state.get("dirs"), state.get("writers")
    return (
        isinstance(dirs, dict)
        and "" in dirs
        and all(_known(k) for k in dirs)
        and all(type(t) is int and _INT64[0] <= t <= _INT64[1] for t in dirs.values())
        and isinstance(writers, dict)
        and bool(writers)
        and all(_utf8(w) and type(s) is str and _utf8(s) for w, s in writers.items())
    )


_INT64 = (-(2**63), 2**63 - 1)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _known(key: str) -> bool:
    """A key of a state's times: the run directory (""), a stream directory, or a
    digest (``digests/<name>``, never a way out of the run directory)."""
    if not _utf8(key):
        return False
    head, sep, name = key.partition("/")
    if not sep:
        return key == "" or key in STREAM_DIRS
    return head == DIGEST_DIR and name not in ("", ".", "..") and not {"/", "\0"} & set(name)


# -- the snapshot ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    lines: pa.Table
    covered: int  # bytes of the index it holds the lines of
    digest: str  # their hash
    size: int  # the index's size, inode and time when it was read
    ino: int
    mtime_ns: int

    def unchanged(self, st: os.stat_result) -> bool:
        """The index is as this snapshot read it (an append changes size and time)."""
        return (st.st_size, st.st_ino, st.st_mtime_ns) == (self.covered, self.ino, self.mtime_ns)

    def covers(self, data: bytes) -> bool:
        """``data`` (the index now) starts with the bytes this snapshot holds."""
        return len(data) >= self.covered and _prefix_hash(data[: self.covered]) == self.digest


def _prefix_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _snapshot_path(root: Path) -> Path:
    return root / INDEX_DIR / SNAPSHOT_FILE


def _read_snapshot(root: Path) -> _Snapshot | None:
    """The snapshot, when it is one this version wrote and its rows are plausible."""
    try:
        data = read_regular(os.fspath(_snapshot_path(root)), MAX_INDEX_BYTES, what="a snapshot")
        with pa.ipc.open_file(pa.py_buffer(data)) as reader:
            meta = json.loads((reader.schema.metadata or {})[_SNAPSHOT_KEY])
            lines = reader.read_all()
        if meta["version"] != SNAPSHOT_VERSION or not lines.schema.equals(INDEX_LINES):
            return None
        lines.validate(full=True)  # offsets in bounds, UTF-8 text
        snapshot = _Snapshot(
            lines,
            covered=meta["covered"],
            digest=meta["hash"],
            size=meta["size"],
            ino=meta["ino"],
            mtime_ns=meta["mtime_ns"],
        )
        if not all(type(v) is int for v in (snapshot.covered, snapshot.ino, snapshot.mtime_ns)):
            return None
        return snapshot if type(snapshot.digest) is str and _plausible(lines) else None
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None


def _plausible(lines: pa.Table) -> bool:
    """A snapshot is only ever written from checked lines; a damaged or hand-made one
    whose values a digest or a state could not hold is not used."""
    if not plausible(lines) or lines["valid"].null_count or lines["sha"].null_count:
        return False
    keys = pc.struct_field(pc.list_flatten(lines["state_dirs"]), "key")
    known = pc.and_(
        pc.match_substring_regex(keys, _KNOWN_KEY),
        pc.invert(pc.is_in(keys, value_set=pa.array([f"{DIGEST_DIR}/.", f"{DIGEST_DIR}/.."]))),
    )
    return not pc.any(pc.invert(known)).as_py()


_KNOWN_KEY = "^(|{}|{}/[^/\\x00]+)$".format("|".join(sorted(STREAM_DIRS)), DIGEST_DIR)
"""What ``_known`` lets through, as a regular expression (less ``.`` and ``..``)."""


def _write_snapshot(root: Path, lines: pa.Table, covered: bytes, st: os.stat_result) -> None:
    meta = {
        "version": SNAPSHOT_VERSION,
        "covered": len(covered),
        "hash": _prefix_hash(covered),
        "size": st.st_size,
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
    }
    path = _snapshot_path(root)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    schema = INDEX_LINES.with_metadata({_SNAPSHOT_KEY: json.dumps(meta).encode()})
    try:
        with pa.OSFile(os.fspath(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(lines.cast(schema))
        os.replace(tmp, path)
    except OSError as e:  # a read-only store, a full disk: listed without it next time too
        log.debug("run index snapshot not written (%s)", e)
        with contextlib.suppress(OSError):
            tmp.unlink()


# -- listing runs from it ----------------------------------------------------------------


@dataclass(frozen=True)
class IndexedRuns:
    """The runs the index lists, and their writers' digests."""

    run_ids: frozenset[str] = frozenset()
    digests: pa.Table = field(default_factory=DIGEST_ROWS.empty_table)


def indexed_runs(root: Path, run_ids: Iterable[str]) -> IndexedRuns:
    """The runs among ``run_ids`` (directories of ``root``) whose recorded state is
    current, with the digests of every writer of each (the index's copies); the
    others must be listed from their directories."""
    lines = read_index(root).lines
    if lines["state_dirs"].null_count == lines.num_rows:
        return IndexedRuns()
    line_runs, ranks = lines["run_id"].to_pylist(), lines["rank"].to_pylist()
    keys = zip(
        line_runs, ranks, lines["attempt"].to_pylist(), lines["sha"].to_pylist(), strict=True
    )
    body = {key: i for i, key in enumerate(keys)}  # the last line of a writer's digest
    valid = lines["valid"].to_pylist()
    states: dict[str, list[int]] = {}
    for i in pc.indices_nonzero(lines["state_dirs"].is_valid()).to_pylist():
        states.setdefault(line_runs[i], []).append(i)
    # Flat lists and offsets: 10,000 runs' states as dicts would cost more than their stats.
    dirs = lines["state_dirs"].combine_chunks()
    dir_at = dirs.offsets.to_pylist()
    dir_keys = pc.struct_field(dirs.values, "key").to_pylist()
    dir_times = pc.struct_field(dirs.values, "mtime_ns").to_pylist()
    writers_of = lines["state_writers"].to_pylist()
    listed, taken = [], []
    for run_id in run_ids:
        base = os.path.join(root, run_id)
        for i in reversed(states.get(run_id, [])[-_STATES_TRIED:]):
            at = slice(dir_at[i], dir_at[i + 1])
            if not _current(base, dir_keys[at], dir_times[at]):
                continue
            rows = [_line(body, run_id, w["writer"], w["sha"]) for w in writers_of[i]]
            if all(r is not None and valid[r] for r in rows):
                listed.append(run_id)
                taken += sorted(rows, key=ranks.__getitem__)
            break
    digests = lines.select(DIGEST_ROWS.names).take(pa.array(taken, pa.int64()))
    return IndexedRuns(frozenset(listed), digests)


def _line(
    body: dict[tuple[str, int, int, str], int], run_id: str, key: str, sha: str
) -> int | None:
    """The line of writer ``<rank>-<attempt>`` whose digest hashed to ``sha``; None for a
    resumed run's (attempt > 0: its views need the rows) or a malformed key."""
    rank, _, attempt = key.partition("-")
    if not (rank.isdigit() and rank.isascii() and attempt == "0"):
        return None
    return body.get((run_id, int(rank), 0, sha))


def _current(base: str, keys: list[str], times: list[int]) -> bool:
    """Every directory and digest of a state (``keys``, relative to the run directory
    ``base``) still has its recorded time and kind."""
    if "" not in keys:
        return False
    for name, recorded in zip(keys, times, strict=True):
        try:
            st = os.stat(f"{base}/{name}" if name else base, follow_symlinks=False)
        except OSError:
            return False
        kind = stat.S_IFREG if "/" in name else stat.S_IFDIR
        if st.st_mtime_ns != recorded or stat.S_IFMT(st.st_mode) != kind:
            return False
    return True
