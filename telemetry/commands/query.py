"""``telemetry query ROOT "SQL"``: read-only SQL over a store's views.

The query runs on a locked store (``Store.lock``): the segments are already loaded,
so it sees every row, but it cannot read other files, write any (``COPY ... TO``,
``EXPORT DATABASE``), ``ATTACH`` a database, install or load extensions, or change
settings. Only one ``SELECT`` (or ``EXPLAIN``) statement is accepted, so the views
cannot be dropped or replaced either. A misspelt view or column is answered with
what exists: the views, or the columns of the views the query names.

The result is streamed: fetched from DuckDB ``BATCH_ROWS`` rows at a time and written
before the next batch is read (``telemetry.output``), so memory does not grow with
the result. The query and its output run on a worker thread while the main thread
waits; Ctrl-C (exit 130) or ``--timeout`` (exit 124) interrupt DuckDB at once
(``DuckDBPyConnection.interrupt``) instead of waiting for it to finish.

From Python, the same views without the CLI::

    from analysis import open_store
    df = open_store("runs").sql("SELECT run_id, status FROM runs")   # Polars
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from telemetry import common
from telemetry.common import EXIT_TIMEOUT, CliError, QueryError
from telemetry.output import (
    emit,
    format_option,
    frames,
    output_option,
    quiet_output_option,
    write_text,
)

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

    from analysis import Store
    from store.location import StorePath

VIEW_MEANINGS = {
    "runs": "one row per run: name, status (derived), steps, attempts, start/end, "
    "duration, config (JSON text), error",
    "events": "lifecycle and metadata events (run_started, run_finished, run_failed, "
    "heartbeat, dropped, ...); payload is JSON text",
    "scalars": "logged values (loss, accuracy, lr...): name, split, value; latest attempt per step",
    "tensors": "per-parameter statistics on sampled steps: param, kind (grad, weight, "
    "update), norm, mean, std, min, max, abs_max, zero_frac, nonfinite",
    "activations": "per-module output statistics on sampled steps: mean, std, zero_frac, "
    "saturated_frac, dead_frac, nonfinite",
    "inputs": "the model's input per feature (or channel) on sampled steps: index, layout, "
    "numel, mean, std, min, max",
    "predictions": "what tel.log_predictions recorded, as written: split, confusion cells "
    "(true_class, predicted_class, count) or regression sums per output index",
    "confusion": "confusion matrix per run, split and step: true_class, predicted_class, count",
    "residuals": "regression predictions per run, split, step and output index: target and "
    "output mean/std, bias, rmse, mae, max_abs_error, r2",
    "sweep": "each run's config, flattened, against its best loss/val: key, value, number, "
    "outcome, status, diverged (sweep_of(name, split, goal) for another metric)",
    "samples": "sampled images (feature maps, filters) as uint8 bytes with shape, lo, hi",
    "modules": "the model summary: module, type, parent, depth, parameters, shapes",
    "system": "per-step timing and memory: step_time_s, data_time_s, compute_time_s, "
    "samples_per_s, max_memory_bytes",
    "exports": "export benchmark results: format, batch_size, latencies, throughput, size, "
    "parity, metric, status",
    "metric_goals": "which way each run's metrics improve: name, goal (min, max or null), "
    "defined (by tel.define_metric, else from the name's words)",
    "findings": "what telemetry analyze finds, derived when a query names it (default "
    "rules and thresholds): rule, severity, run_id, subject, step, message, suggestion, "
    "evidence (JSON), caused_by",
}
"""One line per view for ``--schema`` (the columns are listed from the store itself)."""

ALLOWED_STATEMENTS = ("SELECT",)
"""Statement types a query may be (``EXPLAIN`` and ``EXPLAIN ANALYZE`` of one, too)."""


BATCH_ROWS = 16_384
"""Rows fetched from DuckDB at a time: what the output holds in memory, whatever the result."""
TABLE_ROWS = 1000
"""Rows the table format shows by default (``--max-rows``); the rest are counted."""
_POLL_S = 0.05
"""How often the main thread wakes while a query runs (to take Ctrl-C, to interrupt)."""


class QueryTimeout(CliError):
    """The query ran past ``--timeout`` and was interrupted."""

    exit_code = EXIT_TIMEOUT


def public_views() -> tuple[str, ...]:
    from analysis.store import MACRO_VIEWS, SUMMARY_VIEWS, VIEWS

    return ("runs", *VIEWS, *SUMMARY_VIEWS, *MACRO_VIEWS, "metric_goals", FINDINGS)


FINDINGS = "findings"
"""The table of findings: made by a diagnosis (``analysis.register_findings``) only
for a query that names it, so other queries never pay for one."""

_NAMES_FINDINGS = re.compile(rf"\b{FINDINGS}\b", re.IGNORECASE)


def prepare(store: Store, sql: str) -> None:
    """What ``sql`` reads that is made on demand: the ``findings`` table when it names
    it (before ``Store.lock``, which check_query applies)."""
    from analysis import register_findings

    if _NAMES_FINDINGS.search(sql) and not _has_table(store, FINDINGS):
        register_findings(store)


def _has_table(store: Store, name: str) -> bool:
    found = store.sql(
        "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = $name", {"name": name}
    )
    return bool(found["n"][0])


def run_query(store: Store, sql: str) -> pl.DataFrame:
    """``sql`` on a locked ``store``, the whole result at once (``stream_query`` for a
    large one); a ``QueryError`` that says what exists when it fails."""
    import duckdb

    prepare(store, sql)
    check_query(store, sql)
    try:
        return store.sql(sql)
    except duckdb.Error as e:
        raise _query_error(e, store, sql) from e


def stream_query(
    store: Store,
    sql: str,
    *,
    cursor: duckdb.DuckDBPyConnection,
    rows_per_batch: int = BATCH_ROWS,
) -> Iterator[pl.DataFrame]:
    """The result of ``sql`` on a locked ``store``, one DataFrame per batch of rows.

    ``cursor``: a cursor of ``store.con``, the one to ``interrupt()`` to stop the query.
    Errors are ``QueryError`` whether DuckDB raises them before the first row or
    half-way through the result.
    """
    import duckdb

    prepare(store, sql)
    check_query(store, sql)
    try:
        rel = cursor.sql(sql)
        # to_arrow_reader from duckdb 1.4 on; fetch_arrow_reader (deprecated there) before.
        reader: pa.RecordBatchReader = (
            rel.to_arrow_reader(rows_per_batch)
            if hasattr(rel, "to_arrow_reader")
            else rel.fetch_arrow_reader(rows_per_batch)
        )
    except duckdb.Error as e:
        raise _query_error(e, store, sql) from e
    try:
        yield from frames(reader.schema, _batches(reader))
    finally:  # the stream's DuckDB result, released before its cursor is closed
        reader.close()


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches; DuckDB's errors while streaming (a cast that fails on row
    10 million, an interrupt) reach here through Arrow as ``OSError``."""
    import pyarrow as pa

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as e:
            raise QueryError(_first_lines(e)) from e
        yield batch


def check_query(store: Store, sql: str) -> None:
    """Lock ``store`` and refuse ``sql`` unless it is one ``SELECT`` (or ``EXPLAIN`` of one)."""
    import duckdb

    store.lock()
    try:
        statements = store.con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(_first_lines(e)) from e
    if len(statements) != 1:
        raise QueryError(
            f"one statement at a time, got {len(statements)}"
            + ("" if statements else " (the query is empty)")
        )
    kind = statements[0].type.name
    if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs the statement it explains
        inner = re.sub(r"^\s*EXPLAIN\s+(ANALYZE\s+)?", "", sql, flags=re.IGNORECASE)
        kind = _statement_kind(store, inner)
    if kind not in ALLOWED_STATEMENTS:
        raise QueryError(
            f"telemetry query is read-only: statement {kind} is refused; "
            "write a SELECT over the views (and -o FILE to save its result)"
        )


def _query_error(e: duckdb.Error, store: Store, sql: str) -> QueryError:
    """DuckDB's refusal of ``sql``, with what the user can do or what exists."""
    import duckdb

    if isinstance(e, duckdb.PermissionException):
        return QueryError(
            f"{_first_lines(e)}\ntelemetry query is read-only and reads only the store's "
            "views: no other files, no writes (use -o FILE to save a result)"
        )
    if isinstance(e, duckdb.InvalidInputException):
        return QueryError(f"{_first_lines(e)}\n(settings cannot be changed in a query)")
    if isinstance(e, duckdb.CatalogException):
        return QueryError(f"{_first_line(e)}{_did_you_mean(e)}\n{_views_hint()}")
    if isinstance(e, duckdb.BinderException):
        return QueryError(f"{_first_lines(e)}\n{_columns_hint(store, sql)}")
    return QueryError(_first_lines(e))


def run_stoppable(
    cursor: duckdb.DuckDBPyConnection, work: Callable[[], None], *, timeout: float | None
) -> None:
    """``work`` (a query on ``cursor`` and its output) on a worker thread, stopped by
    Ctrl-C or after ``timeout`` seconds.

    The main thread only waits, so it takes SIGINT at once; DuckDB, running in the
    main thread, would only see it between tasks, and Polars' conversion of a result
    never (Ctrl-C waited for the whole query, then was lost). The wait is the timer of
    ``--timeout``. Ctrl-C re-raises ``KeyboardInterrupt`` once the query has stopped
    (a second Ctrl-C does not wait); the deadline raises ``QueryTimeout``. ``work``'s
    own error is raised here. ``cursor`` is closed once the worker has ended.
    """
    failure: list[BaseException] = []
    # An Event, not Thread.join()/is_alive(): Ctrl-C inside join() can leave a thread
    # that still runs reported as stopped (CPython 3.11's bpo-45274 handling), and the
    # query then ran on while the CLI exited (and hung in DuckDB's atexit clean-up).
    done = threading.Event()

    def target() -> None:
        try:
            work()
        except BaseException as e:  # handed to the main thread, raised there
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=target, name="telemetry-query", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # Short waits: SIGINT may be delivered to another thread, and then nothing
        # wakes a main thread blocked for good to run the handler.
        while not done.is_set() and (deadline is None or time.monotonic() < deadline):
            done.wait(_POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic()))
        if not done.is_set():
            _stop(cursor, done)
            raise QueryTimeout(
                f"the query ran past --timeout {timeout:g} s and was stopped; "
                "narrow it (WHERE, LIMIT) or give it more time"
            )
    except KeyboardInterrupt:
        _stop(cursor, done)
        raise
    finally:
        # Closed here, once the worker has ended (never under it: a second Ctrl-C
        # leaves it running): DuckDB refuses close() while interrupt() runs.
        if done.is_set():
            cursor.close()
    if failure:
        raise failure[0]


def _stop(cursor: duckdb.DuckDBPyConnection, done: threading.Event) -> None:
    """Interrupt DuckDB until the worker has ended.

    Again and again: an interrupt that lands between two statements of the worker
    (before its query starts) is forgotten by DuckDB, the next one is not.
    """
    import duckdb

    while not done.is_set():
        with contextlib.suppress(duckdb.Error):  # a connection busy closing its result
            cursor.interrupt()
        done.wait(_POLL_S)


def _statement_kind(store: Store, sql: str) -> str:
    import duckdb

    try:
        statements = store.con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(_first_lines(e)) from e
    return statements[0].type.name if len(statements) == 1 else "MULTI"


def view_schema(store: Store) -> list[dict[str, Any]]:
    """Every view: name, meaning and columns (name and DuckDB type), in ``public_views`` order."""
    from analysis import Diagnosis, register_findings

    if not _has_table(store, FINDINGS):  # its columns, without a diagnosis
        register_findings(store, Diagnosis(runs=store.sql("SELECT * FROM runs LIMIT 0")))
    out = []
    for view in public_views():
        columns = store.sql(f"DESCRIBE {view}")  # view names are ours, never user input
        out.append(
            {
                "view": view,
                "meaning": VIEW_MEANINGS.get(view) or _sql_comment(view),
                "columns": [
                    {"name": n, "type": t}
                    for n, t in zip(
                        columns["column_name"].to_list(),
                        columns["column_type"].to_list(),
                        strict=True,
                    )
                ],
            }
        )
    return out


def format_schema(views: list[dict[str, Any]]) -> str:
    lines = []
    for v in views:
        lines.append(f"{click.style(v['view'], bold=True)}  {v['meaning']}")
        width = max(len(c["name"]) for c in v["columns"])
        lines += [f"    {c['name']:<{width}}  {c['type']}" for c in v["columns"]]
        lines.append("")
    return "\n".join(lines).rstrip()


def _sql_comment(view: str) -> str:
    """The first comment line after ``-- view:`` in the view's SQL file."""
    text = resources.files("analysis.views").joinpath(f"{view}.sql").read_text()
    for line in text.splitlines()[1:]:
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return ""


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0]


def _first_lines(e: Exception) -> str:
    """DuckDB's message without its trailing blank lines (the LINE pointer is kept)."""
    return "\n".join(line.rstrip() for line in str(e).strip().splitlines() if line.strip())


def _did_you_mean(e: Exception) -> str:
    """DuckDB's suggestion when it is one of our views (it may name an internal table)."""
    m = re.search(r'Did you mean "([^"]+)"', str(e))
    return f' Did you mean "{m.group(1)}"?' if m and m.group(1) in public_views() else ""


def _views_hint() -> str:
    return f"views: {', '.join(public_views())} (telemetry query ROOT --schema lists their columns)"


def _columns_hint(store: Store, sql: str) -> str:
    named = [v for v in public_views() if re.search(rf"\b{v}\b", sql, re.IGNORECASE)]
    if not named:
        return _views_hint()
    lines = []
    for view in named:
        columns = store.sql(f"DESCRIBE {view}")["column_name"].to_list()
        lines.append(f"columns of {view}: {', '.join(columns)}")
    return "\n".join(lines)


@click.command("query")
@common.root_argument
@click.argument("sql", required=False)
@click.option(
    "--schema",
    is_flag=True,
    help="List every view with its meaning and columns (no SQL needed).",
)
@format_option()
@output_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help=f"Stop the query (and its output) after this long; exit {EXIT_TIMEOUT}.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=TABLE_ROWS,
    show_default=True,
    help="Rows the table format shows, the rest are counted (0: all). "
    "csv, json and parquet write every row.",
)
@common.engine_options
@quiet_output_option
def query(
    root: StorePath,
    sql: str | None,
    schema: bool,
    fmt: str,
    output: Path | None,
    timeout: float | None,
    max_rows: int,
    engine: str,
    master: str,
    spark_conf: dict[str, str],
    quiet: bool,
) -> None:
    """Run one read-only SQL query over the views of the store at ROOT.

    Views: runs, events, scalars, tensors, activations, samples, modules, system,
    exports, metric_goals, and findings (what analyze finds, derived when the query
    names it); --schema lists their columns. SQL '-' reads the query from stdin. The
    query may not write, read other files or change settings. The result is streamed:
    writing it takes the same memory whatever its size. Ctrl-C stops the query at
    once (exit 130).

    --engine spark runs Spark SQL over the same views registered in Spark
    (analysis.spark.register_views; --master, --conf): the same columns and rows,
    Spark's SQL dialect, the result collected whole.

    \b
    Example:
      telemetry query runs/ --schema
      telemetry query runs/ "SELECT run_id, status, steps FROM runs ORDER BY started_at"
      telemetry query runs/ "SELECT step, value FROM scalars WHERE name = 'loss'" --format csv
      telemetry query runs/ "SELECT run_id, rule, message FROM findings WHERE severity = 'error'"
      telemetry query runs/ "SELECT * FROM tensors WHERE kind = 'grad'" -o grads.parquet \\
          --format parquet --timeout 60
      telemetry query runs/ --engine spark "SELECT run_id, max(norm) FROM tensors GROUP BY 1"
    """

    if schema and sql is not None:
        raise click.UsageError("give SQL or --schema, not both")
    if not schema and sql is None:
        raise click.UsageError('give a SQL query, e.g. "SELECT * FROM runs", or --schema')
    if sql == "-":
        sql = sys.stdin.read()
    if engine == "spark":
        _spark_query(root, sql, fmt, output, timeout, max_rows, master, spark_conf, quiet)
        return
    store = common.open_root(root)
    if sql is None:
        views = view_schema(store)
        if fmt == "table":
            if output is not None:
                raise click.UsageError("--schema -o FILE needs --format json")
            click.echo(format_schema(views))
        elif fmt == "json":
            text = json.dumps(views, indent=2)
            if output is None:
                click.echo(text)
            else:
                write_text(text, output)
        else:
            raise click.UsageError("--schema prints as table or json")
        return
    text = sql
    prepare(store, text)  # a diagnosis, in this thread, when the query reads findings
    cursor = store.con.cursor()

    def work() -> None:
        result = stream_query(store, text, cursor=cursor)
        emit(result, fmt, output, quiet=quiet, max_rows=max_rows or None)

    run_stoppable(cursor, work, timeout=timeout)


def _spark_query(
    root: StorePath,
    sql: str | None,
    fmt: str,
    output: Path | None,
    timeout: float | None,
    max_rows: int,
    master: str,
    conf: dict[str, str],
    quiet: bool,
) -> None:
    """``query --engine spark``: the views registered in a Spark session, one Spark SQL
    query (or ``--schema``: the views' Spark columns)."""
    import polars as pl

    from analysis import StoreError
    from analysis.spark import SparkQueryError, SparkQueryTimeout, register_views, run_query

    common.open_root(root, runs_only=True).close()  # named before Spark takes its seconds
    spark = common.spark_session(master, conf)
    try:
        registered = register_views(spark, root)
    except StoreError as e:
        raise common.cli_error(e) from e
    views = list(registered.views)
    if sql is not None and _NAMES_FINDINGS.search(sql):
        _spark_findings(spark, root)
    if sql is None:
        described = [
            {
                "view": view,
                "meaning": VIEW_MEANINGS.get(view, ""),
                "columns": [
                    {"name": f.name, "type": f.dataType.simpleString()}
                    for f in spark.table(view).schema.fields
                ],
            }
            for view in views
        ]
        if fmt == "json":
            text = json.dumps(described, indent=2)
            click.echo(text) if output is None else write_text(text, output)
        elif fmt == "table" and output is None:
            click.echo(format_schema(described))
        else:
            raise click.UsageError("--schema prints as table or json (-o FILE: json)")
        return
    try:
        table = run_query(spark, sql, timeout=timeout)
    except SparkQueryTimeout as e:
        raise QueryTimeout(str(e)) from e
    except SparkQueryError as e:
        raise QueryError(f"{e}\nviews: {', '.join(views)}") from e
    emit(pl.from_arrow(table), fmt, output, quiet=quiet, max_rows=max_rows or None)


def _spark_findings(spark: Any, root: StorePath) -> None:
    """The ``findings`` view: a diagnosis on Spark (default rules and thresholds)."""
    from analysis import diagnose
    from analysis.findings import findings_table

    store = common.open_root(root, runs_only=True)
    diagnosis = diagnose(store, engine="spark", spark=spark)
    spark.createDataFrame(findings_table(diagnosis.findings)).createOrReplaceTempView(FINDINGS)
