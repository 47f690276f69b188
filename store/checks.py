"""What a reader checks in an entry of the store before it trusts it.

A file named like a segment is only read when its footer (read once, no data) says
it is one of ours and belongs where it lies: our schema version, the stream of its
directory, the envelope columns, column types the views can use (a string ``value``
would break every rule that calls ``isfinite``), and, from the column statistics,
rows of the run whose directory holds it and of the rank and attempt its name says.
A run directory copied or linked inside the store, or a segment dropped into the
wrong run, is therefore named, never read twice.

A compacted segment hides the segments it covers only while it passes these checks
and holds the rows of each of them that does (``store.compaction.claim_problem``,
called by ``store.scan``): ``seq`` values are unique per writer only. Entries that
are no regular file are described by ``not_regular`` and never opened.

Columns this reader does not know are not an error: a newer writer may add a
nullable column without a schema version bump. The store leaves them out.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from store.errors import TelemetryError
from store.layout import SegmentName
from store.location import StorePath, read_metadata, read_table
from store.schema import (
    ENVELOPE,
    ENVELOPE_NAMES,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    STREAM_KEY,
    Stream,
)

REQUIRED = tuple(f.name for f in ENVELOPE if not f.nullable)
"""Envelope columns every row needs: the views group and order by them."""

_TYPES = {s: {f.name: f.type for f in SCHEMAS[s]} for s in Stream}
_OWN = {s: frozenset(_TYPES[s]) - ENVELOPE_NAMES for s in Stream}
_LEAVES = {f.name: i for i, f in enumerate(ENVELOPE)}
"""Leaf column index of each envelope column in a file of the stream's own schema."""


class Vanished(TelemetryError):
    """A listed file or directory disappeared before it was read."""


@dataclass(frozen=True)
class Footer:
    """What a readable segment's footer says that readers need again: its rows and
    the names of its columns (``analysis.store`` counts rows and selects columns from
    these instead of reading every footer twice more)."""

    rows: int
    columns: frozenset[str]


def check_segment(
    path: StorePath,
    stream: Stream,
    *,
    run_id: str | None = None,
    seg: SegmentName | None = None,
    footers: dict[str, Footer] | None = None,
) -> str | None:
    """Why ``path`` cannot be read as a segment of ``stream``, or None if it can.

    ``run_id`` and ``seg``: the run whose directory holds it and its parsed name; its
    rows must be theirs. Reads the footer only (and, where a foreign writer left no
    column statistics, the three envelope columns that say whose rows they are).
    ``footers``: where a readable segment's ``Footer`` is kept, by ``str(path)``."""
    try:
        meta = read_metadata(path)
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
        other = kv[STREAM_KEY].decode(errors="replace")
        return f"a {other!r} segment in the {stream.value!r} directory"
    problem = None
    if meta.num_rows > 0:
        ours = schema.equals(SCHEMAS[stream])
        if not ours:  # another writer's file: the columns have to be checked
            problem = _columns_problem(schema, stream)
        if problem is None and run_id is not None and seg is not None:
            problem = _owner_problem(path, meta, run_id, seg, ours=ours)
    if problem is None and footers is not None:
        footers[str(path)] = Footer(meta.num_rows, frozenset(schema.names))
    return problem


def _columns_problem(schema: pa.Schema, stream: Stream) -> str | None:
    names = set(schema.names)
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        return f"missing envelope columns {missing}"
    if not names & _OWN[stream]:
        return f"none of the {stream.value} columns {sorted(_OWN[stream])}"
    want = _TYPES[stream]
    for field in schema:
        expected = want.get(field.name)
        if expected is not None and not compatible(field.type, expected):
            return (
                f"column {field.name!r} is {field.type}; the {stream.value} stream stores "
                f"{expected}"
            )
    return None


def compatible(found: pa.DataType, want: pa.DataType) -> bool:
    """Whether a column of type ``found`` can be stored as ``want`` without changing its
    meaning: another width of the same kind, a dictionary of it, all nulls."""
    t = pa.types
    if found == want or t.is_null(found):
        return True
    if t.is_dictionary(found):
        found = found.value_type
    if t.is_integer(want):
        return bool(t.is_integer(found))
    if t.is_floating(want):
        return bool(t.is_floating(found) or t.is_integer(found))
    if t.is_string(want) or t.is_large_string(want):
        return bool(t.is_string(found) or t.is_large_string(found) or t.is_string_view(found))
    if t.is_binary(want) or t.is_large_binary(want):
        return bool(t.is_binary(found) or t.is_large_binary(found) or t.is_binary_view(found))
    if t.is_timestamp(want):
        return bool(t.is_timestamp(found))
    if t.is_list(want):
        lists = t.is_list(found) or t.is_large_list(found)
        return bool(lists and compatible(found.value_type, want.value_type))
    return bool(found == want)


def _owner_problem(
    path: StorePath, meta: pq.FileMetaData, run_id: str, seg: SegmentName, *, ours: bool
) -> str | None:
    """Whether the rows are of this run, rank and attempt: from the footer's statistics."""
    want: dict[str, Any] = {"run_id": run_id, "rank": seg.rank, "attempt": seg.attempt}
    found = _footer_values(meta, want, ours=ours)
    if found is None:  # no statistics (another writer): read those three columns
        try:
            table = read_table(path, columns=list(want))
        except Exception as e:  # as in check_segment: skip and say
            if not path.exists():
                raise Vanished(path) from e
            return f"not a readable Parquet file ({type(e).__name__}: {e})"
        found = {n: set(pc.unique(table[n]).to_pylist()) for n in want}
    if found["run_id"] != {run_id}:
        runs = ", ".join(sorted(repr(r) for r in found["run_id"]))
        return (
            f"holds rows of run {runs}, not of {run_id!r} whose directory holds it "
            "(a copied or linked run directory, or a segment put in the wrong run)"
        )
    if found["rank"] != {seg.rank} or found["attempt"] != {seg.attempt}:
        return (
            f"holds rows of rank {sorted(found['rank'], key=repr)} and attempt "
            f"{sorted(found['attempt'], key=repr)}; its name says rank {seg.rank}, "
            f"attempt {seg.attempt}"
        )
    return None


def _footer_values(
    meta: pq.FileMetaData, names: dict[str, Any], *, ours: bool
) -> dict[str, set[Any]] | None:
    """The values of the ``names`` columns from their min/max statistics in every row
    group (text decoded); None where a row group has none or holds nulls. ``ours``: the
    file has the stream's schema, whose envelope columns come first."""
    if ours:
        leaves = _LEAVES
    else:
        group = meta.row_group(0)
        leaves = {group.column(j).path_in_schema: j for j in range(group.num_columns)}
        if any(n not in leaves for n in names):
            return None
    out: dict[str, set[Any]] = {n: set() for n in names}
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for name in names:
            stats = group.column(leaves[name]).statistics
            if stats is None or not stats.has_min_max or stats.null_count:
                return None
            out[name].update((stats.min_raw, stats.max_raw))  # raw: a third of the cost
    return {n: {_text(v) for v in values} for n, values in out.items()}


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def not_regular(path: str, *, where: str) -> str:
    """Why the entry at ``path``, which the listing did not report as what belongs there
    (a regular file, a directory), is not read; ``where`` says what it stands for
    ("named like a segment", "where a stream directory belongs")."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode):
            return f"{_kind(mode)} {where}"
        broken = link_problem(path)
        if broken:
            return broken
        target = os.stat(path).st_mode
    except FileNotFoundError:
        return f"removed while the store was being read ({where})"
    return f"a symbolic link to {_kind(target)} {where}"


def link_problem(path: str) -> str | None:
    """Why the symbolic link at ``path`` cannot be followed, or None if it can."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop (following it never ends)"
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        if e.errno == errno.ENOENT:
            return f"a dangling symbolic link (to {target!r})"
        return f"a symbolic link to {target!r} that cannot be followed ({e.strerror})"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a file"
