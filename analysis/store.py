"""open_store(path) -> Store: the read side of a telemetry store, as DuckDB views.

The Store lists the published segments itself (instead of a DuckDB glob) so that it
can skip what it cannot read and say so: torn or foreign files, segments of an
unknown future schema version, stray files, empty run directories, and segments
covered by a compacted one (which would otherwise be read twice). Views are defined
once, at open time, from that list; reopen the store to see segments published
later. The segments are loaded into in-memory DuckDB tables at open time (see
``_load`` for why).

Writers keep writing while a store is opened: a segment listed here may be deleted
by a compaction (its rows moved to a merged file published just before) before it
is read. Then the whole listing is taken again, so a reader sees every row exactly
once, never half a compaction.

Example::

    from analysis import open_store

    store = open_store("runs")
    store.sql("SELECT run_id, status, steps FROM runs")   # a Polars DataFrame
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from collector.compaction import split_covered
from collector.layout import SegmentName, parse_segment_name
from collector.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, SCHEMAS, STREAM_KEY, Stream

log = logging.getLogger(__name__)

VIEWS = ("events", "scalars", "tensors", "activations", "samples", "modules", "system", "exports")
"""Stream views, one per stream (latest attempt per step). ``runs`` is derived from them."""

_SCAN_TRIES = 5
"""Listings retried when segments vanish under the reader (compactions running)."""

STALE_AFTER_S = 60.0
"""A run with no final event and nothing written for this long is reported ``crashed``
(the collector writes a heartbeat every 15 s by default)."""


@dataclass(frozen=True)
class Unreadable:
    """A file in the store that the views leave out, and why."""

    path: Path
    reason: str


class StoreError(Exception):
    """The store path cannot be opened at all (missing, not a directory)."""


class Store:
    """Read-only SQL access to a store. ``con`` is the DuckDB connection with the views."""

    def __init__(self, path: Path, *, stale_after_s: float = STALE_AFTER_S) -> None:
        self.path = path
        self.unreadable: list[Unreadable] = []
        self.segments: dict[Stream, list[Path]] = {s: [] for s in Stream}
        self._last_try = False
        self.con = duckdb.connect(":memory:")
        # Settings live in a table, not SET VARIABLE: variables are per connection and
        # every store.sql() call runs on a cursor of its own.
        self.con.execute(
            "CREATE TABLE _settings AS SELECT $s::DOUBLE AS stale_after_s", {"s": stale_after_s}
        )
        for stream in Stream:
            self._create_empty(stream)
        for last_try in [False] * (_SCAN_TRIES - 1) + [True]:
            if self._scan_and_load(last_try=last_try):
                break
        for item in self.unreadable:
            log.warning("skipping %s: %s", item.path, item.reason)
        for view in (*VIEWS, "runs"):
            sql = resources.files("analysis.views").joinpath(f"{view}.sql").read_text()
            self.con.execute(f"CREATE VIEW {view} AS {sql}")

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` over the views and return a Polars DataFrame."""
        cur = self.con.cursor()
        try:
            return cur.sql(query, params=params).pl()
        finally:
            cur.close()

    def run_ids(self) -> list[str]:
        return self.sql("SELECT run_id FROM runs ORDER BY started_at, run_id")["run_id"].to_list()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scanning -----------------------------------------------------------------------

    def _scan_and_load(self, *, last_try: bool) -> bool:
        """List and load every readable segment; False if files vanished meanwhile.

        On the last try, files that vanish are listed as unreadable instead.
        """
        self.unreadable = []
        self.segments = {s: [] for s in Stream}
        self._last_try = last_try
        try:
            self._scan()
        except _Vanished:
            return False
        for stream in Stream:
            try:
                self._load(stream, last_try=last_try)
            except _Vanished:
                return False
        return True

    def _scan(self) -> None:
        for run_dir in sorted(self.path.iterdir()):
            if run_dir.name.startswith("."):
                continue
            if not run_dir.is_dir():
                self.unreadable.append(Unreadable(run_dir, "a file where a run directory belongs"))
                continue
            if not self._scan_run(run_dir):
                self.unreadable.append(
                    Unreadable(
                        run_dir,
                        "an empty run directory: no segment published yet (a run starting "
                        "now, or one killed before its first write)",
                    )
                )

    def _scan_run(self, run_dir: Path) -> bool:
        """Add the run's segments; False when it has nothing at all to read or to skip."""
        before = len(self.unreadable)
        found = False
        for entry in sorted(self._listdir(run_dir)):
            if entry.name.startswith("."):
                continue
            try:
                stream = Stream(entry.name)
            except ValueError:
                self.unreadable.append(Unreadable(entry, "not a stream of this store"))
                continue
            named: dict[Path, SegmentName] = {}
            for path in sorted(self._listdir(entry)):
                if path.name.startswith("."):
                    continue  # a temporary file being written, or left by a crash
                seg = parse_segment_name(path.name)
                if seg is None:
                    self.unreadable.append(Unreadable(path, "not a segment file name"))
                else:
                    named[path] = seg
            live, _covered = split_covered(named)  # one listing: never half a compaction
            for path in sorted(live):
                try:
                    reason = _check_segment(path, stream)
                except _Vanished:
                    if not self._last_try:
                        raise
                    reason = _REMOVED
                if reason:
                    self.unreadable.append(Unreadable(path, reason))
                else:
                    self.segments[stream].append(path)
                    found = True
        return found or len(self.unreadable) > before

    def _create_empty(self, stream: Stream) -> None:
        empty = pa.Table.from_batches([], schema=SCHEMAS[stream])
        # A real (empty, typed) table, not a registered Arrow object: registrations are
        # local to one connection and store.sql() runs on a cursor of its own.
        self.con.register("_arrow_empty", empty)
        self.con.execute(f"CREATE TABLE _empty_{stream.value} AS SELECT * FROM _arrow_empty")
        self.con.unregister("_arrow_empty")

    def _load(self, stream: Stream, *, last_try: bool) -> None:
        """(Re)create ``raw_<stream>`` from the listed segments.

        Materialised once per open: every rule reads these tables several times, and
        DuckDB 2.0.1 mis-evaluates `NOT isnan(x)` when it pushes the filter into a
        Parquet scan (NaN rows survive); filters on a table are evaluated correctly.
        A file whose footer read well but whose data does not is found by reading the
        files one by one, and listed as unreadable.
        """
        files = self.segments[stream]
        try:
            self._create_raw(stream, files)
            return
        except duckdb.Error:
            if not files:
                raise
        good: list[Path] = []
        for path in files:
            try:
                self.con.execute(f"SELECT count(*) FROM read_parquet({_sql_list([path])})")
                good.append(path)
            except duckdb.Error as e:
                if not path.exists():
                    if not last_try:
                        raise _Vanished(path) from e
                    reason = _REMOVED
                else:
                    reason = f"not readable ({type(e).__name__}: {e})"
                self.unreadable.append(Unreadable(path, reason))
        self.segments[stream] = good
        self._create_raw(stream, good)

    def _create_raw(self, stream: Stream, files: list[Path]) -> None:
        body = f"SELECT * FROM _empty_{stream.value}"
        if files:
            body += (
                " UNION ALL BY NAME SELECT * FROM "
                f"read_parquet({_sql_list(files)}, union_by_name = true)"
            )
        self.con.execute(f"CREATE OR REPLACE TABLE raw_{stream.value} AS {body}")

    def _listdir(self, directory: Path) -> list[Path]:
        try:
            return list(directory.iterdir())
        except FileNotFoundError as e:
            if self._last_try:
                return []  # gone for good: nothing to read there
            raise _Vanished(directory) from e


class _Vanished(Exception):
    """A listed file or directory disappeared before it was read (a compaction ran)."""


_REMOVED = "removed while the store was being read (by a compaction or a cleanup)"


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _check_segment(path: Path, stream: Stream) -> str | None:
    """Why ``path`` cannot be read as a segment of ``stream``, or None if it can."""
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as e:  # truncated, garbage, permission: all mean "skip and say"
        if not path.exists():
            raise _Vanished(path) from e
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


def open_store(path: str | Path, *, stale_after_s: float = STALE_AFTER_S) -> Store:
    """Open the store at ``path`` for reading; an empty or half-written store is fine."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no store at {str(p)!r}: the directory does not exist")
    if not p.is_dir():
        raise StoreError(f"{str(p)!r} is not a directory; a store is a directory of runs")
    return Store(p, stale_after_s=stale_after_s)
