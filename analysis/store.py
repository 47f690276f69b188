"""open_store(path) -> Store: the read side of a telemetry store, as DuckDB views.

The Store lists the published segments itself (instead of a DuckDB glob) so that it
can skip what it cannot read or trust and say so: torn or foreign files, segments of
an unknown future schema version, look-alikes (``store.checks``: wrong column
types, another run's rows, a compaction's false claim, a FIFO), stray files, empty
run directories, and segments covered by a compacted one (which would otherwise be
read twice). What it skips is in ``store.unreadable`` and in warnings summarised per
reason. One bad file or value costs that file or value, never the store: an event
payload DuckDB cannot parse as JSON is read as null. Views are defined once, at open
time, from that list; reopen the store to see segments published later. The
segments are loaded into in-memory DuckDB tables at open time (see ``_load`` for
why).

Writers keep writing while a store is opened: a segment listed here may be deleted
by a compaction (its rows moved to a merged file published just before) before it
is read. Then that run is listed again and the tables loaded again, so a reader
sees every row exactly once (see ``store.scan``).

Example::

    from analysis import open_store

    store = open_store("runs")
    store.sql("SELECT run_id, status, steps FROM runs")   # a Polars DataFrame
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from store.digest import ACTIVITY_STREAMS, DIGEST_DIR, Digest
from store.errors import TelemetryError
from store.metrics import default_goal_sql
from store.scan import REMOVED, RESCANS, RunListing, Unreadable, list_run, list_store
from store.schema import SCHEMAS, Stream

log = logging.getLogger(__name__)

VIEWS = ("events", "scalars", "tensors", "activations", "samples", "modules", "system", "exports")
"""Stream views, one per stream (latest attempt per step). ``runs`` is derived from them."""

MACROS = ("curves", "tails", "exports")
"""SQL macros shared by the rules and the report (``analysis/macros/<name>.sql``), created
over the views at open time; a user query may call them too."""

STALE_AFTER_S = 60.0
"""A run with no final event and nothing written for this long is reported ``crashed``
(the collector writes a heartbeat every 15 s by default)."""


class StoreError(TelemetryError):
    """The store path cannot be opened at all (missing, not a directory)."""


class Store:
    """Read-only SQL access to a store. ``con`` is the DuckDB connection with the views."""

    def __init__(
        self, path: Path, *, stale_after_s: float = STALE_AFTER_S, runs_only: bool = False
    ) -> None:
        self.path = path
        self.runs_only = runs_only
        self.con = duckdb.connect(":memory:")
        # Settings live in a table, not SET VARIABLE: variables are per connection and
        # every store.sql() call runs on a cursor of its own.
        self.con.execute(
            "CREATE TABLE _settings AS SELECT $s::DOUBLE AS stale_after_s", {"s": stale_after_s}
        )
        for stream in Stream:
            self._create_empty(stream)
        runs, strays = list_store(path, trust_digests=runs_only)
        self.segments: dict[Stream, list[Path]] = {}
        for stream in Stream:
            if runs_only and stream not in ACTIVITY_STREAMS:
                self._create_raw(stream, [])  # not read by the runs view
                self.segments[stream] = []
            else:
                runs = self._load(stream, runs)
        self._create_digest_tables([d for r in runs for d in r.digests])
        if not runs_only:
            self._fill_epochs()
        # Runs with a second attempt (resume=): only their steps can be recorded twice.
        attempts = " UNION ".join(
            f"SELECT DISTINCT run_id FROM raw_{s.value} WHERE attempt > 0" for s in Stream
        )
        self.con.execute(f"CREATE TABLE _resumed AS {attempts}")
        self.unreadable: list[Unreadable] = strays + [u for r in runs for u in r.unreadable]
        self.unreadable += self._null_malformed_payloads()
        for line in summarise(self.unreadable):
            log.warning("%s", line)
        for view in ("runs",) if runs_only else (*VIEWS, "runs"):
            self.con.execute(f"CREATE VIEW {view} AS {_view_sql(view)}")
        # The lowest and highest finite value of each run's scalars (telemetry runs):
        # from the rows, and from the digests of the writers listed by one.
        scalars = "scalars"
        if runs_only:  # the rows of the writers without a current digest only
            scalars = "_scalars_partial"
            self.con.execute(f"CREATE VIEW {scalars} AS {_view_sql('scalars')}")
        self.con.execute(
            "CREATE VIEW _run_metrics AS "
            "SELECT run_id, name, split, min(value) AS lo, max(value) AS hi "
            f"FROM {scalars} WHERE isfinite(value) GROUP BY run_id, name, split "
            "UNION ALL SELECT run_id, name, split, lo, hi FROM _metrics"
        )
        self.con.execute(
            f"CREATE MACRO metric_default_goal(name) AS {default_goal_sql('name')}"
        )
        self.con.execute(f"CREATE VIEW metric_goals AS {_view_sql('metric_goals')}")
        if not runs_only:  # the macros read the stream views, which a runs-only store lacks
            for name in MACROS:
                self.con.execute(_macro_sql(name))

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` over the views and return a Polars DataFrame."""
        cur = self.con.cursor()
        try:
            return cur.sql(query, params=params).pl()
        finally:
            cur.close()

    def lock(self) -> None:
        """Refuse, from now on, every file access and settings change on this connection.

        Queries still see every row (the segments were loaded into tables at open
        time), but ``COPY ... TO``, ``ATTACH``, ``EXPORT DATABASE``, ``INSTALL``/``LOAD``
        and ``read_csv('/etc/passwd')`` fail with ``duckdb.PermissionException``, and
        ``SET`` fails because the configuration is locked. ``telemetry query`` runs
        user SQL on a locked store. Irreversible for this connection; idempotent.
        """
        (locked,) = self.con.execute("SELECT current_setting('lock_configuration')").fetchall()
        if locked[0]:
            return
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def run_ids(self) -> list[str]:
        return self.sql("SELECT run_id FROM runs ORDER BY started_at, run_id")["run_id"].to_list()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading ------------------------------------------------------------------------

    def _create_empty(self, stream: Stream) -> None:
        empty = pa.Table.from_batches([], schema=SCHEMAS[stream])
        # A real (empty, typed) table, not a registered Arrow object: registrations are
        # local to one connection and store.sql() runs on a cursor of its own.
        self.con.register("_arrow_empty", empty)
        self.con.execute(f"CREATE TABLE _empty_{stream.value} AS SELECT * FROM _arrow_empty")
        self.con.unregister("_arrow_empty")

    def _create_digest_tables(self, digests: list[Digest]) -> None:
        """``_writers`` (per writer: how far it got, when it was seen), ``_lifecycle``
        (its run_started/run_finished/run_failed events) and ``_metrics`` (its scalars'
        extremes) from current digests: the ``runs`` view and ``_run_metrics`` read them
        beside the raw rows of writers without one."""
        wall = pa.timestamp("us", tz="UTC")
        writers = pa.table(
            {
                "run_id": pa.array([d.run_id for d in digests], pa.string()),
                "rank": pa.array([d.rank for d in digests], pa.int32()),
                "attempt": pa.array([d.attempt for d in digests], pa.int32()),
                "steps": pa.array([d.max_step for d in digests], pa.int64()),
                "first_seen": pa.array([d.first_us for d in digests], pa.int64()).cast(wall),
                "last_seen": pa.array([d.last_us for d in digests], pa.int64()).cast(wall),
            }
        )
        events = [(d, e) for d in digests for e in d.lifecycle]
        lifecycle = pa.table(
            {
                "run_id": pa.array([d.run_id for d, _ in events], pa.string()),
                "attempt": pa.array([d.attempt for d, _ in events], pa.int32()),
                "kind": pa.array([e["kind"] for _, e in events], pa.string()),
                "payload": pa.array([e["payload"] for _, e in events], pa.string()),
                "wall_time": pa.array([e["wall_time"] for _, e in events], pa.int64()).cast(wall),
            }
        )
        metrics = [(d, m) for d in digests for m in d.metrics]
        extremes = pa.table(
            {
                "run_id": pa.array([d.run_id for d, _ in metrics], pa.string()),
                "name": pa.array([m["name"] for _, m in metrics], pa.string()),
                "split": pa.array([m["split"] for _, m in metrics], pa.string()),
                "lo": pa.array([m["min"] for _, m in metrics], pa.float64()),
                "hi": pa.array([m["max"] for _, m in metrics], pa.float64()),
            }
        )
        tables = (("_writers", writers), ("_lifecycle", lifecycle), ("_metrics", extremes))
        for name, table in tables:
            self.con.register("_arrow_digests", table)
            self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow_digests")
            self.con.unregister("_arrow_digests")

    def _load(self, stream: Stream, runs: list[RunListing]) -> list[RunListing]:
        """(Re)create ``raw_<stream>``; the listings, with the runs taken again where files
        vanished under the reader.

        Materialised once per open: every rule reads these tables several times, and
        DuckDB 2.0.1 mis-evaluates `NOT isnan(x)` when it pushes the filter into a
        Parquet scan (NaN rows survive); filters on a table are evaluated correctly.
        A run is listed again at most ``RESCANS`` times; then what still vanishes is
        listed as unreadable.
        """
        relisted: dict[Path, int] = {}
        while True:
            files = [p for r in runs for p in r.segments[stream]]
            try:
                self._create_raw(stream, files)
                self.segments[stream] = files
                return runs
            except duckdb.Error:
                if not files:
                    raise
            gone = {p.parent.parent for p in files if not p.exists()}
            again = {r for r in gone if relisted.get(r, 0) < RESCANS}
            if not again:
                self.segments[stream] = self._readable(runs, stream)
                return runs
            # A compaction published a merged file and removed the listed ones: list again.
            for run in again:
                relisted[run] = relisted.get(run, 0) + 1
            runs = [
                list_run(r.path, trust_digests=self.runs_only) if r.path in again else r
                for r in runs
            ]

    def _readable(self, runs: list[RunListing], stream: Stream) -> list[Path]:
        """Load the files one by one: a file whose footer read well but whose data does
        not (or does not fit the schema's types), or that vanished, is moved from the
        listing to its unreadable list."""
        self._create_raw(stream, [])
        good: list[Path] = []
        for run in runs:
            for path in list(run.segments[stream]):
                try:
                    self._insert(stream, [path])  # every column read and cast
                    good.append(path)
                except duckdb.Error as e:
                    run.segments[stream].remove(path)
                    reason = f"not readable ({type(e).__name__}: {e})"
                    run.unreadable.append(Unreadable(path, reason if path.exists() else REMOVED))
        return good

    def _create_raw(self, stream: Stream, files: list[Path]) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TABLE raw_{stream.value} AS SELECT * FROM _empty_{stream.value}"
        )
        if files:
            self._insert(stream, files)

    def _insert(self, stream: Stream, files: list[Path]) -> None:
        """Append ``files`` to ``raw_<stream>``, cast to the schema's types (a value that
        does not fit fails the statement, which changes nothing). Only the schema's
        columns are read: a newer writer's added columns are left out."""
        known = ", ".join(f"'{name}'" for name in SCHEMAS[stream].names)
        self.con.execute(
            f"INSERT INTO raw_{stream.value} BY NAME SELECT COLUMNS(lambda c: c IN ({known})) "
            f"FROM read_parquet({_sql_list(files)}, union_by_name = true)"
        )

    def _fill_epochs(self) -> None:
        """Give the rows written without an epoch, in runs that log epochs, the epoch
        they belong to (``collector.epochs``): the epoch of the run's next scalar row
        that has one, at the same or a later step (``epoch=`` on the validation log at
        an epoch's end); after the run's last such row, the last + 1 (an epoch not
        finished). Runs that log no epoch keep null; rows that carry one keep it."""
        self.con.execute(
            "CREATE TABLE _epoch_marks AS SELECT run_id, step, max(epoch) AS epoch "
            "FROM raw_scalars WHERE epoch IS NOT NULL GROUP BY run_id, step"
        )
        self.con.execute(
            "CREATE TABLE _epoch_last AS SELECT run_id, arg_max(epoch, step) AS epoch "
            "FROM _epoch_marks GROUP BY run_id"
        )
        for stream in Stream:
            table = f"raw_{stream.value}"
            self.con.execute(
                f"UPDATE {table} SET epoch = f.epoch FROM ("
                "  SELECT x.rowid AS row, coalesce(m.epoch, l.epoch + 1) AS epoch"
                f"  FROM {table} x JOIN _epoch_last l USING (run_id)"
                "  ASOF LEFT JOIN _epoch_marks m ON x.run_id = m.run_id AND x.step <= m.step"
                "  WHERE x.epoch IS NULL"
                f") f WHERE {table}.rowid = f.row"
            )

    def _null_malformed_payloads(self) -> list[Unreadable]:
        """Event payloads DuckDB cannot parse as JSON (a lone surrogate, which Python's
        json module writes as the escape \\udc80; a torn value) become null, and each run
        that had one is named: one such payload would otherwise fail every query of the
        ``runs`` view, for the whole store."""
        sources = {"raw_events": "events", "_lifecycle": DIGEST_DIR}
        bad = self.con.execute(  # one query for both: each costs a millisecond
            " UNION ALL ".join(
                f"SELECT '{table}', run_id, count(*), list(DISTINCT kind ORDER BY kind) "
                f"FROM {table} WHERE NOT json_valid(payload) GROUP BY run_id"
                for table in sources
            )
            + " ORDER BY 2, 1"
        ).fetchall()
        for table in {row[0] for row in bad}:
            self.con.execute(f"UPDATE {table} SET payload = NULL WHERE NOT json_valid(payload)")
        out = []
        for table, run_id, n, kinds in bad:
            reason = (
                f"{n} event payload(s) that are not valid JSON ({', '.join(kinds)}): "
                "read as null; the rest of the run is read"
            )
            out.append(Unreadable(self.path / run_id / sources[table], reason))
        return out


WARNED_PER_REASON = 3
"""Skipped entries named one per line for each reason; beyond that, one line says how
many there are, with the first few (``store.unreadable`` always lists every one)."""
WARNED_REASONS = 20
"""Reasons given lines of their own; the entries of any others are counted in one line."""


def summarise(unreadable: list[Unreadable]) -> list[str]:
    """Lines that name what ``unreadable`` holds, a few per reason: 100,000 stray files
    make one line, not 100,000. What the store logs; a CLI can print the same."""
    by_reason: dict[str, list[Path]] = {}
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


def _view_sql(view: str) -> str:
    return resources.files("analysis.views").joinpath(f"{view}.sql").read_text()


def _macro_sql(name: str) -> str:
    return resources.files("analysis.macros").joinpath(f"{name}.sql").read_text()


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def open_store(
    path: str | Path, *, stale_after_s: float = STALE_AFTER_S, runs_only: bool = False
) -> Store:
    """Open the store at ``path`` for reading; an empty or half-written store is fine.

    ``runs_only``: only the ``runs`` view, listed from the writers' digests where they
    are current (``store.digest``) instead of from every segment: what listing runs
    needs, at a small fraction of the cost on a wide store. The stream views do not
    exist on such a store."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no store at {str(p)!r}: the directory does not exist")
    if not p.is_dir():
        raise StoreError(f"{str(p)!r} is not a directory; a store is a directory of runs")
    return Store(p, stale_after_s=stale_after_s, runs_only=runs_only)
