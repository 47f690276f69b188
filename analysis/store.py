"""open_store(path) -> Store: the read side of a telemetry store, as DuckDB views.

The Store lists the published segments itself (instead of a DuckDB glob) so that it
can skip what it cannot read and say so: torn or foreign files, segments of an
unknown future schema version, and segments covered by a compacted one (which would
otherwise be read twice). Views are defined once, at open time, from that list;
reopen the store to see segments published later. The segments are loaded into
in-memory DuckDB tables at open time (see ``_define_raw_view`` for why).

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

from collector.compaction import live_segments
from collector.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, SCHEMAS, STREAM_KEY, Stream

log = logging.getLogger(__name__)

VIEWS = ("events", "scalars", "tensors", "activations", "samples", "modules", "system", "exports")
"""Stream views, one per stream (latest attempt per step). ``runs`` is derived from them."""

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
        self._scan()
        self.con = duckdb.connect(":memory:")
        # Settings live in a table, not SET VARIABLE: variables are per connection and
        # every store.sql() call runs on a cursor of its own.
        self.con.execute(
            "CREATE TABLE _settings AS SELECT $s::DOUBLE AS stale_after_s", {"s": stale_after_s}
        )
        for stream in Stream:
            self._define_raw_view(stream)
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

    def _scan(self) -> None:
        for run_dir in sorted(self.path.iterdir()):
            if run_dir.name.startswith("."):
                continue
            if not run_dir.is_dir():
                self.unreadable.append(Unreadable(run_dir, "a file where a run directory belongs"))
                continue
            for entry in sorted(run_dir.iterdir()):
                if entry.name.startswith("."):
                    continue
                try:
                    stream = Stream(entry.name)
                except ValueError:
                    self.unreadable.append(Unreadable(entry, "not a stream of this store"))
                    continue
                live, _covered = live_segments(entry)
                for path in sorted(entry.iterdir()):
                    if path.name.startswith("."):
                        continue  # a temporary file being written, or left by a crash
                    if path not in live and path not in _covered:
                        self.unreadable.append(Unreadable(path, "not a segment file name"))
                for path in sorted(live):
                    reason = _check_segment(path, stream)
                    if reason:
                        self.unreadable.append(Unreadable(path, reason))
                    else:
                        self.segments[stream].append(path)
        for item in self.unreadable:
            log.warning("skipping %s: %s", item.path, item.reason)

    def _define_raw_view(self, stream: Stream) -> None:
        empty = pa.Table.from_batches([], schema=SCHEMAS[stream])
        # A real (empty, typed) table, not a registered Arrow object: registrations are
        # local to one connection and store.sql() runs on a cursor of its own.
        self.con.register("_arrow_empty", empty)
        self.con.execute(f"CREATE TABLE _empty_{stream.value} AS SELECT * FROM _arrow_empty")
        self.con.unregister("_arrow_empty")
        files = self.segments[stream]
        body = f"SELECT * FROM _empty_{stream.value}"
        if files:
            listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
            body += (
                f" UNION ALL BY NAME SELECT * FROM read_parquet([{listed}], union_by_name = true)"
            )
        # Materialised once per open: every rule reads these tables several times, and
        # DuckDB 2.0.1 mis-evaluates `NOT isnan(x)` when it pushes the filter into a
        # Parquet scan (NaN rows survive); filters on a table are evaluated correctly.
        self.con.execute(f"CREATE TABLE raw_{stream.value} AS {body}")


def _check_segment(path: Path, stream: Stream) -> str | None:
    """Why ``path`` cannot be read as a segment of ``stream``, or None if it can."""
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as e:  # truncated, garbage, permission: all mean "skip and say"
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
