"""open_store(path) -> Store: the read side of a telemetry store, as DuckDB views.

The Store lists the published segments itself (instead of a DuckDB glob) so that it
can skip what it cannot read or trust and say so: torn or foreign files, segments of
an unknown future schema version, look-alikes (``store.checks``: wrong column
types, another run's rows, a compaction's false claim, a FIFO), stray files, empty
run directories, and segments covered by a compacted one (which would otherwise be
read twice). What it skips is in ``store.unreadable`` and in warnings summarised per
reason. One bad file or value costs that file or value, never the store: an event
payload DuckDB cannot parse as JSON is read as null.

The views read the listed Parquet files lazily (issue 19): a query reads only the
columns and row groups it needs, and memory does not grow with the store (DuckDB's
``memory_limit``, ``TELEMETRY_MEMORY_LIMIT``, spilling to a temporary directory).
Opening reads the files' footers and the small ``events`` stream, not the rows. A file
whose data cannot be read is found by the first query that reads it: it is then left
out, named in ``unreadable`` and a warning, and the query runs again. Views are
defined from the listing taken at open time; reopen the store to see segments
published later.

Writers keep writing while a store is opened: a segment listed here may be deleted
by a compaction (its rows moved to a merged file published just before) before it
is read. Then that run is listed again and the views defined again, so a reader
sees every row exactly once (see ``store.scan``).

Example::

    from analysis import open_store

    store = open_store("runs")
    store.sql("SELECT run_id, status, steps FROM runs")   # a Polars DataFrame
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from store.checks import Footer
from store.digest import ACTIVITY_STREAMS, DIGEST_DIR, DigestTables, digest_rows, digest_tables
from store.errors import TelemetryError
from store.layout import parse_segment_name
from store.liveness import gone_runs, started_writers_sql
from store.location import RemotePath, StorePath, store_path
from store.metrics import default_goal_sql
from store.scan import REMOVED, RESCANS, Unreadable, list_run, list_store
from store.schema import SCHEMAS, Stream

log = logging.getLogger(__name__)

VIEWS = (
    "events",
    "scalars",
    "tensors",
    "activations",
    "samples",
    "modules",
    "system",
    "exports",
    "inputs",
    "predictions",
)
"""Stream views, one per stream (latest attempt per step). ``runs`` is derived from them."""

SUMMARY_VIEWS = ("confusion", "residuals")
"""Views that add up a stream view's rows (``predictions``), in SQL both engines read."""

MACRO_VIEWS = ("sweep",)
"""Views over a macro (``sweep``: ``sweep_of`` with the best validation loss); DuckDB only."""

MACROS = ("curves", "tails", "exports", "failures", "sweep")
"""SQL macros shared by the rules and the report (``analysis/macros/<name>.sql``), created
over the views at open time; a user query may call them too."""

STALE_AFTER_S = 60.0
"""A run with no final event and nothing written for this long is reported ``crashed``
(the collector writes a heartbeat every 15 s by default)."""


class StoreError(TelemetryError):
    """The store path cannot be opened at all (missing, not a directory)."""


LOADED_ROWS = 2_000_000
"""Rows of a store's smallest streams loaded into memory at open (about 250 bytes a
row); the rest are read from the files by each query. Small stores, and the small
streams of large ones, are then queried from memory: a sweep of a thousand short
runs took 35 s to diagnose through views (each query opening ~3,000 files) and under
2 s from memory."""

MEMORY_LIMIT = os.environ.get("TELEMETRY_MEMORY_LIMIT", "1GB")
"""DuckDB's memory limit for one open store (``TELEMETRY_MEMORY_LIMIT`` overrides it):
what does not fit spills to a temporary directory instead of growing the process."""


class Store:
    """Read-only SQL access to a store. ``con`` is the DuckDB connection with the views."""

    def __init__(
        self,
        path: StorePath,
        *,
        stale_after_s: float = STALE_AFTER_S,
        runs_only: bool = False,
        run_ids: Collection[str] | None = None,
    ) -> None:
        self.path = path
        self.runs_only = runs_only
        self.con = duckdb.connect(":memory:")
        if isinstance(path, RemotePath):  # DuckDB reads its URLs through fsspec
            self.con.register_filesystem(path.fs)
        # Where DuckDB spills what does not fit its memory limit (made only if it does).
        self._spill = Path(tempfile.gettempdir()) / f"telemetry-duckdb-{os.getpid()}-{id(self)}"
        # pyarrow writes no NaN into a float column's min/max statistics; without this,
        # DuckDB trusts them: `NOT isnan(x)` keeps NaN rows, `isnan(x)` folds to false,
        # and row groups holding NaN or Inf are skipped (tests/analysis/test_lazy_reads).
        self.con.execute("SET GLOBAL parquet_can_have_nan = true")
        self.con.execute(f"SET GLOBAL memory_limit = '{_setting(MEMORY_LIMIT)}'")
        self.con.execute(f"SET GLOBAL temp_directory = '{_setting(str(self._spill))}'")
        # Settings live in a table, not SET VARIABLE: variables are per connection and
        # every store.sql() call runs on a cursor of its own.
        self.con.execute(
            "CREATE TABLE _settings AS SELECT $s::DOUBLE AS stale_after_s", {"s": stale_after_s}
        )
        # Runs whose writers this reader knows are gone (store.liveness): the runs
        # view says crashed at once instead of waiting for stale_after_s.
        self.con.execute("CREATE TABLE _gone (run_id VARCHAR)")
        for stream in Stream:
            self._create_empty(stream)
        listing = list_store(path, trust_digests=runs_only, only=run_ids)
        self._strays = listing.strays
        self._runs = listing.runs
        # Every current digest: of the runs listed from the run index, and of the
        # writers listed by their own digest file (runs-only stores only).
        self._digests = pa.concat_tables(
            [listing.indexed, digest_rows([d for r in listing.runs for d in r.digests])]
        )
        self._relisted: dict[StorePath, int] = {}
        self._file_rows: dict[Stream, dict[str, int]] = {}  # rows per file, from footers
        self._payloads: list[Unreadable] = []  # events whose payload is not JSON
        self._create_digest_tables(digest_tables(self._digests))
        self._define()
        self.unreadable: list[Unreadable] = self._skipped()
        self._payloads = self._null_malformed_payloads()
        self.unreadable += self._payloads
        for line in summarise(self.unreadable):
            log.warning("%s", line)
        while True:  # binding a view lists its files: one may have vanished since
            try:
                self._create_views()
                self._mark_gone()
                break
            except duckdb.Error as e:
                if not self.recover(e):
                    raise

    def _create_views(self) -> None:
        """The public views, the macros and the views ``telemetry runs`` reads, over
        ``raw_<stream>``."""
        runs_only = self.runs_only
        for view in ("runs",) if runs_only else (*VIEWS, "runs"):
            self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {view_sql(view)}")
        # The lowest and highest finite value of each run's scalars (telemetry runs):
        # from the rows, and from the digests of the writers listed by one.
        scalars = "scalars"
        if runs_only:  # the rows of the writers without a current digest only
            scalars = "_scalars_partial"
            self.con.execute(f"CREATE OR REPLACE VIEW {scalars} AS {view_sql('scalars')}")
        self.con.execute(
            "CREATE OR REPLACE VIEW _run_metrics AS "
            "SELECT run_id, name, split, min(value) AS lo, max(value) AS hi "
            f"FROM {scalars} WHERE isfinite(value) GROUP BY run_id, name, split "
            "UNION ALL SELECT run_id, name, split, lo, hi FROM _metrics"
        )
        self.con.execute(
            f"CREATE OR REPLACE MACRO metric_default_goal(name) AS {default_goal_sql('name')}"
        )
        self.con.execute(f"CREATE OR REPLACE VIEW metric_goals AS {view_sql('metric_goals')}")
        if not runs_only:  # these read the stream views, which a runs-only store lacks
            for view in SUMMARY_VIEWS:
                self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {view_sql(view)}")
            for name in MACROS:
                self.con.execute(_macro_sql(name))
            for view in MACRO_VIEWS:
                self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {view_sql(view)}")

    def _mark_gone(self) -> None:
        """Fill ``_gone``: the runs not ended whose processes ran on this host and have
        ended (``store.liveness``); only the events of writers that did not end are read."""
        writers = self.con.execute(started_writers_sql()).fetchall()
        gone = gone_runs(writers)
        self.con.execute("DELETE FROM _gone")
        if gone:
            self.con.executemany("INSERT INTO _gone VALUES (?)", [(r,) for r in gone])

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` over the views and return a Polars DataFrame.

        The views read the segment files when a query runs. A file a compaction
        removed since the store was listed makes its run listed again, and a file
        whose data cannot be read is left out (named in ``unreadable`` and a warning);
        then the query runs again, so it sees every row exactly once."""
        while True:
            cur = self.con.cursor()
            try:
                return cur.sql(query, params=params).pl()
            except duckdb.Error as e:
                if not self.recover(e):
                    raise
            finally:
                cur.close()

    def recover(self, error: duckdb.Error) -> bool:
        """After ``error`` from a query: list again the runs whose files vanished, or
        leave out the files that cannot be read, and define the views again. False
        when no file is at fault (the query itself is): nothing changed."""
        if not self._repair(error, warn=True):
            return False
        self._define()
        self.unreadable = self._skipped() + self._payloads
        return True

    def _repair(self, error: duckdb.Error, *, warn: bool = False) -> bool:
        """After ``error``: list again the runs whose files vanished, or else leave out
        the files that cannot be read (``warn``: each named in a warning now). False
        when no file is at fault."""
        gone = {p.parent.parent for p in self.files() if not p.exists()}
        if gone:
            self._relist(gone)
            return True
        bad = self._unreadable_files(error)
        for path, reason in bad:
            self._drop(path, reason)
            if warn:
                log.warning("skipping %s: %s", path, reason)
        return bool(bad)

    def files(self) -> list[StorePath]:
        """Every segment file the views read."""
        return [p for paths in self.segments.values() for p in paths]

    def run_files(self) -> dict[str, list[tuple[Stream, StorePath]]]:
        """Each run's segment files as listed, every stream, with those a current
        digest names (a runs-only store lists a writer by its digest, reading none)."""
        out: dict[str, list[tuple[Stream, StorePath]]] = {}
        for run in self._runs:
            files = out.setdefault(run.path.name, [])
            files += [(s, p) for s in Stream for p in run.segments[s]]
        named = self._digests.select(["run_id", "segments"]).to_pylist()
        for row in named:
            run_dir = self.path / row["run_id"]
            files = out.setdefault(row["run_id"], [])
            files += [
                (Stream(f["stream"]), run_dir / f["stream"] / f["name"]) for f in row["segments"]
            ]
        return out

    def lock(self) -> None:
        """Refuse, from now on, every file access but the store's segments, and every
        settings change, on this connection.

        Queries still see every row (the views read only the store's directories), but
        ``COPY ... TO``, ``ATTACH``, ``EXPORT DATABASE``, ``INSTALL``/``LOAD`` and
        ``read_csv('/etc/passwd')`` fail with ``duckdb.PermissionException``, and
        ``SET`` fails because the configuration is locked. ``telemetry query`` runs
        user SQL on a locked store (and accepts only a ``SELECT``). Irreversible for
        this connection; idempotent.
        """
        (locked,) = self.con.execute("SELECT current_setting('lock_configuration')").fetchall()
        if locked[0]:
            return
        dirs = sorted({str(p.parent) for p in self.files()} | {str(self.path.resolve())})
        resolved = sorted({str(p.resolve().parent) for p in self.files()})
        allowed = ", ".join(f"'{_setting(d)}/'" for d in sorted(set(dirs) | set(resolved)))
        self.con.execute(f"SET allowed_directories = [{allowed}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def run_ids(self) -> list[str]:
        return self.sql("SELECT run_id FROM runs ORDER BY started_at, run_id")["run_id"].to_list()

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the views over the files --------------------------------------------------------

    def _define(self) -> None:
        """(Re)define ``raw_<stream>`` over the listed files (nothing is read but their
        footers), ``_resumed`` and ``_epoch_bounds``; a run whose files vanish under
        the listing is listed again (at most ``RESCANS`` times, then named)."""
        while True:
            self.segments = {
                s: [p for r in self._runs for p in r.segments[s]]
                if not (self.runs_only and s not in ACTIVITY_STREAMS)
                else []
                for s in Stream
            }
            try:
                self._create_files_views()
                self._create_resumed()
                if self.runs_only:
                    self.con.execute(
                        "CREATE OR REPLACE TABLE _epoch_bounds AS "
                        "SELECT ''::VARCHAR AS run_id, []::BIGINT[] AS bounds, "
                        "[]::BIGINT[] AS epochs, 0::BIGINT AS last LIMIT 0"
                    )
                else:
                    self.con.execute(f"CREATE OR REPLACE TABLE _epoch_bounds AS {_EPOCH_BOUNDS}")
                for stream in Stream:
                    self._create_raw(stream)
                return
            except duckdb.Error as e:
                if not self._repair(e):
                    raise

    def _relist(self, run_dirs: set[StorePath]) -> None:
        """List ``run_dirs`` again (a compaction published a merged file and removed the
        listed ones); a run listed ``RESCANS`` times keeps its listing less the files
        that vanished, which are named as removed."""
        again = {r for r in run_dirs if self._relisted.get(r, 0) < RESCANS}
        for run in again:
            self._relisted[run] = self._relisted.get(run, 0) + 1
        runs = []
        for r in self._runs:
            if r.path in again:
                runs.append(list_run(r.path, trust_digests=self.runs_only))
                continue
            if r.path in run_dirs:  # given up on: what is still there is read
                for paths in r.segments.values():
                    for p in [p for p in paths if not p.exists()]:
                        paths.remove(p)
                        r.unreadable.append(Unreadable(p, REMOVED))
            runs.append(r)
        self._runs = runs

    def _drop(self, path: StorePath, reason: str) -> None:
        for r in self._runs:
            for paths in r.segments.values():
                if path in paths:
                    paths.remove(path)
                    r.unreadable.append(Unreadable(path, reason))

    def _skipped(self) -> list[Unreadable]:
        return self._strays + [u for r in self._runs for u in r.unreadable]

    def _unreadable_files(self, error: duckdb.Error) -> list[tuple[StorePath, str]]:
        """The listed files that cannot be read whole after ``error``: the ones it names,
        else (an error about data that names no file) each file of the streams the
        failed query may read, read alone: a cost paid only after a failure."""
        text = str(error)
        named = [(s, p) for s in Stream for p in self.segments[s] if str(p) in text]
        if not named and _about_data(error):
            streams = [s for s in Stream if s.value in text] or list(Stream)
            named = [(s, p) for s in streams for p in self.segments[s]]
        bad = []
        for stream, path in named:
            cur = self.con.cursor()
            try:
                reader = cur.sql(self._files_select(stream, [path])).to_arrow_reader(65_536)
                for _ in reader:  # every value read and cast, one batch at a time
                    pass
            except duckdb.Error as e:
                reason = f"not readable ({type(e).__name__}: {_first_line(e)})"
                bad.append((path, reason if path.exists() else REMOVED))
            finally:
                cur.close()
        return bad

    def _create_digest_tables(self, digests: DigestTables) -> None:
        """``_writers`` (per writer: how far it got, when it was seen), ``_lifecycle``
        (its run_started/run_finished/run_failed events) and ``_metrics`` (its scalars'
        extremes) from current digests: the ``runs`` view and ``_run_metrics`` read them
        beside the raw rows of writers without one."""
        tables = (
            ("_writers", digests.writers),
            ("_lifecycle", digests.lifecycle),
            ("_metrics", digests.metrics),
        )
        for name, table in tables:
            self.con.register("_arrow_digests", table)
            self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow_digests")
            self.con.unregister("_arrow_digests")

    def _null_malformed_payloads(self) -> list[Unreadable]:
        """Event payloads DuckDB cannot parse as JSON (a lone surrogate, which Python's
        json module writes as the escape \\udc80; a torn value) are read as null
        (``raw_events``; the digests' lifecycle table here), and each run that had one
        is named: one such payload would otherwise fail every query of the ``runs``
        view, for the whole store."""
        sources = {"_files_events": "events", "_lifecycle": DIGEST_DIR}
        bad = self.sql(  # one query for both: the events are a small stream
            " UNION ALL ".join(
                f"SELECT '{table}' AS source, run_id, count(*) AS n, "
                "list(DISTINCT kind ORDER BY kind) AS kinds "
                f"FROM {table} WHERE NOT json_valid(payload) GROUP BY run_id"
                for table in sources
            )
            + " ORDER BY 2, 1"
        ).rows()
        if any(row[0] == "_lifecycle" for row in bad):
            self.con.execute("UPDATE _lifecycle SET payload = NULL WHERE NOT json_valid(payload)")
        return [
            malformed_payloads(self.path / run_id / sources[table], n, kinds)
            for table, run_id, n, kinds in bad
        ]

    def _create_empty(self, stream: Stream) -> None:
        empty = pa.Table.from_batches([], schema=SCHEMAS[stream])
        # A real (empty, typed) table, not a registered Arrow object: registrations are
        # local to one connection and store.sql() runs on a cursor of its own.
        self.con.register("_arrow_empty", empty)
        self.con.execute(f"CREATE TABLE _empty_{stream.value} AS SELECT * FROM _arrow_empty")
        self.con.unregister("_arrow_empty")

    def _create_files_views(self) -> None:
        """``_files_<stream>``: the rows of the stream's files as they are
        (``_files_select``). The smallest streams, up to ``LOADED_ROWS`` rows in all,
        are loaded into memory here, in one pass; the others stay views that read the
        files when a query runs. A store of many short runs has thousands of small
        files, which a view would open again for every query."""
        self._file_rows = {s: self._rows(self.segments[s]) for s in Stream}
        rows = {s: sum(self._file_rows[s].values()) for s in Stream}
        budget = LOADED_ROWS
        for stream in sorted(Stream, key=lambda s: rows[s]):
            name = f"_files_{stream.value}"
            select = self._files_select(stream, self.segments[stream])
            self._drop_relation(name)
            if rows[stream] <= budget:
                budget -= rows[stream]
                self.con.execute(f"CREATE TABLE {name} AS {select}")
            else:
                self.con.execute(f"CREATE VIEW {name} AS {select}")

    def _drop_relation(self, name: str) -> None:
        """Drop the table or view ``name`` if there is one (DROP VIEW fails on a table)."""
        kinds = self.con.execute(
            "SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = $n "
            "UNION ALL SELECT 'VIEW' FROM duckdb_views() WHERE view_name = $n",
            {"n": name},
        ).fetchall()
        for (kind,) in kinds:
            self.con.execute(f"DROP {kind} {name}")

    def _footers(self) -> dict[str, Footer]:
        """The footers the listing read (by str(path)); a run listed again brings its own."""
        return {k: v for r in self._runs for k, v in r.footers.items()}

    def _rows(self, files: list[StorePath]) -> dict[str, int]:
        """Rows of each of ``files`` (by path), from their footers: as the listing read
        them, else (a file it did not check) read again."""
        known = self._footers()
        out = {str(p): known[str(p)].rows for p in files if str(p) in known}
        unknown = [p for p in files if str(p) not in known]
        if unknown:
            counts = self.con.execute(
                "SELECT file_name, sum(num_rows) "
                f"FROM parquet_file_metadata({_sql_list(unknown)}) GROUP BY file_name"
            ).fetchall()
            out |= {str(name): int(n) for name, n in counts}
        return out

    def rows_by_run(self, stream: Stream) -> dict[str, int]:
        """Rows of ``stream`` per run id, from the footers of the files listed at open."""
        out: dict[str, int] = {}
        for name, n in self._file_rows.get(stream, {}).items():
            run_id = Path(name).parent.parent.name  # <root>/<run_id>/<stream>/<file>
            out[run_id] = out.get(run_id, 0) + n
        return out

    def _files_select(self, stream: Stream, files: list[StorePath]) -> str:
        """The rows of ``files`` cast to the schema's types: columns of a newer writer
        are left out, columns a file lacks (an older writer's) are null. Reads the
        files' footers (which columns they have), no data."""
        if not files:
            return f"SELECT * FROM _empty_{stream.value}"
        scan = f"read_parquet({_sql_list(files)}, union_by_name = true)"
        known = self._footers()
        if all(str(p) in known for p in files):  # the listing read every footer
            present = set().union(*(known[str(p)].columns for p in files))
        else:
            described = self.con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
            present = {row[0] for row in described}
        columns = ", ".join(
            f'CAST("{f.name}" AS {_duck_type(f.type)}) AS "{f.name}"'
            if f.name in present
            else f'NULL::{_duck_type(f.type)} AS "{f.name}"'
            for f in SCHEMAS[stream]
        )
        return f"SELECT {columns} FROM {scan}"

    def _create_raw(self, stream: Stream) -> None:
        """``raw_<stream>``: the files' rows; a row written without an epoch, in a run
        that logs epochs, gets the epoch it belongs to (``collector.epochs``): the
        epoch of the run's next scalar row that has one, at the same or a later step;
        after the last such row, the last + 1 (an epoch not finished). An event payload
        DuckDB cannot parse as JSON is read as null."""
        payload = ""
        if stream is Stream.EVENTS:
            payload = ", CASE WHEN json_valid(x.payload) THEN x.payload END AS payload"
        self.con.execute(
            f"CREATE OR REPLACE VIEW raw_{stream.value} AS "
            "SELECT x.* REPLACE (coalesce(x.epoch, "
            "b.epochs[len(list_filter(b.bounds, lambda s: s < x.step)) + 1], b.last + 1) "
            f"AS epoch{payload}) "
            f"FROM _files_{stream.value} x LEFT JOIN _epoch_bounds b ON b.run_id = x.run_id"
        )

    def _create_resumed(self) -> None:
        """Runs with a second attempt (resume=): only their steps can be recorded twice.
        From the segment names (``<rank>-<attempt>-<seq>``; a segment whose rows are
        another writer's is not listed) and the digests, without reading a row."""
        resumed = sorted(
            {p.parent.parent.name for p in self.files() if _attempt(p) > 0}
            | set(
                self._digests.filter(pc.greater(self._digests["attempt"], 0))["run_id"].to_pylist()
            )
        )
        table = pa.table({"run_id": pa.array(resumed, pa.string())})
        self.con.register("_arrow_resumed", table)
        self.con.execute("CREATE OR REPLACE TABLE _resumed AS SELECT * FROM _arrow_resumed")
        self.con.unregister("_arrow_resumed")


def malformed_payloads(where: StorePath, n: int, kinds: list[str]) -> Unreadable:
    """``n`` event payloads of ``kinds`` in ``where`` (a run's events or digests) that
    are not JSON: read as null, named once."""
    reason = (
        f"{n} event payload(s) that are not valid JSON ({', '.join(kinds)}): "
        "read as null; the rest of the run is read"
    )
    return Unreadable(where, reason)


WARNED_PER_REASON = 3
"""Skipped entries named one per line for each reason; beyond that, one line says how
many there are, with the first few (``store.unreadable`` always lists every one)."""
WARNED_REASONS = 20
"""Reasons given lines of their own; the entries of any others are counted in one line."""


def summarise(unreadable: list[Unreadable]) -> list[str]:
    """Lines that name what ``unreadable`` holds, a few per reason: 100,000 stray files
    make one line, not 100,000. What the store logs; a CLI can print the same."""
    by_reason: dict[str, list[StorePath]] = {}
    for item in unreadable:
        by_reason.setdefault(item.reason, []).append(item.path)
    groups = list(by_reason.items())
    lines: list[str] = []
    for reason, paths in groups[:WARNED_REASONS]:
        if len(paths) <= WARNED_PER_REASON:
            lines += [f"skipping {path}: {reason}" for path in paths]
        else:
            shown = ", ".join(str(p) for p in paths[:WARNED_PER_REASON])
            lines.append(f"skipping {len(paths)} entries: {reason} ({shown}, ...)")
    rest = sum(len(paths) for _, paths in groups[WARNED_REASONS:])
    if rest:
        lines.append(f"skipping {rest} more entries for other reasons (see store.unreadable)")
    return lines


_EPOCH_BOUNDS = """
WITH marks AS (  -- per run and step: the epoch its scalar rows were given
    SELECT run_id, step, max(epoch) AS epoch
    FROM _files_scalars WHERE epoch IS NOT NULL GROUP BY run_id, step
),
ends AS (  -- the last step of each stretch of one epoch (a step of a later one follows)
    SELECT *, lead(epoch) OVER (PARTITION BY run_id ORDER BY step) AS next_epoch
    FROM marks
)
SELECT run_id, list(step ORDER BY step) AS bounds, list(epoch ORDER BY step) AS epochs,
       arg_max(epoch, step) AS last
FROM ends
WHERE next_epoch IS DISTINCT FROM epoch
GROUP BY run_id
"""
"""Per run that logs epochs: the last step of each epoch (``bounds``), that epoch
(``epochs``) and the last one; a row without an epoch takes the epoch of the first
bound at or after its step (``Store._create_raw``). A few entries per run whatever
its length: rows of a long run are matched against its epochs, not its steps."""


def _duck_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type of the store's schemas."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    names = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.binary(): "BLOB",
        pa.large_binary(): "BLOB",
    }
    if t in names:
        return names[t]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{_duck_type(t.value_type)}[]"
    raise TypeError(f"no DuckDB type for {t}")


def _attempt(path: StorePath) -> int:
    name = parse_segment_name(path.name)
    return name.attempt if name is not None else 0


def _about_data(error: duckdb.Error) -> bool:
    """Whether ``error`` may come from a file's data rather than from the query: a
    cast that fails, or a page that cannot be decoded (DuckDB's plain ``Error``)."""
    if isinstance(error, duckdb.ConversionException | duckdb.IOException):
        return True
    return type(error) is duckdb.Error


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _setting(text: str) -> str:
    return text.replace("'", "''")


def view_sql(view: str) -> str:
    """The SQL of view ``view`` (``analysis/views/<view>.sql``)."""
    return resources.files("analysis.views").joinpath(f"{view}.sql").read_text()


def _macro_sql(name: str) -> str:
    return resources.files("analysis.macros").joinpath(f"{name}.sql").read_text()


def _sql_list(paths: list[StorePath]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def open_store(
    path: str | Path | RemotePath,
    *,
    stale_after_s: float = STALE_AFTER_S,
    runs_only: bool = False,
    run_ids: Collection[str] | None = None,
) -> Store:
    """Open the store at ``path`` for reading; an empty or half-written store is fine.

    ``runs_only``: only the ``runs`` view, listed from the writers' digests where they
    are current (``store.digest``) instead of from every segment: what listing runs
    needs, at a small fraction of the cost on a wide store. The stream views do not
    exist on such a store; ``analysis.diagnose`` evaluates its runs in stores of their
    own. ``run_ids``: these runs alone (no other entry of the store is looked at).

    ``path`` may be a URL (``s3://bucket/prefix``, any fsspec URL: ``store.location``);
    DuckDB then reads the files through the same fsspec filesystem."""
    try:
        p = store_path(path)
    except TelemetryError as e:  # no filesystem for the URL's scheme
        raise StoreError(str(e)) from e
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except Exception as e:  # object storage: credentials, endpoint, network
        raise StoreError(f"cannot reach the store {str(p)!r}: {type(e).__name__}: {e}") from e
    if not exists:
        what = (
            "nothing is stored under that prefix"
            if isinstance(p, RemotePath)
            else ("the directory does not exist")
        )
        raise StoreError(f"no store at {str(p)!r}: {what}")
    if not is_dir:
        raise StoreError(f"{str(p)!r} is not a directory; a store is a directory of runs")
    return Store(p, stale_after_s=stale_after_s, runs_only=runs_only, run_ids=run_ids)
