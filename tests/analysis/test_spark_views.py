"""The store's views in Spark (``analysis.spark.register_views``) hold what their DuckDB
twins hold: the same columns, types and rows, on a store with the cases the DuckDB
views take care of (resumed runs, epochs filled in, older files, bad payloads, every
status); and ``telemetry query --engine spark`` runs read-only Spark SQL over them."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from analysis import StoreError, open_store
from analysis.spark import SparkQueryError, check_query, register_views, run_query
from analysis.spark.views import VIEWS
from store.schema import Stream
from telemetry.cli import main
from tests.analysis import cases
from tests.builders import RunBuilder

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _store(root: Path) -> Path:
    """The labelled cases and every case the views' SQL handles."""
    for make in dict.fromkeys([*cases.POSITIVE.values(), cases.NEGATIVE]):
        make(root).write()
    # resumed: attempt 1 replays steps 3-4 of scalars, tensors and system
    first = RunBuilder(root, "resumed", config={"lr": 0.1, "opt": {"name": "sgd"}})
    first.scalars("loss", "train", [3.0, 2.0, 1.0, 0.9]).tensors("w", "grad", [1.0, 2.0, 3.0, 4.0])
    first.system([0.1] * 4, [0.01] * 4).write()
    again = RunBuilder(root, "resumed", attempt=1)
    again.scalars("loss", "train", [1.5, 0.5], steps=[3, 4]).tensors(
        "w", "grad", [9.0, 8.0], steps=[3, 4]
    )
    again.system([0.2, 0.2], [0.02, 0.02], steps=[3, 4]).finish().write()
    # epochs: only the end-of-epoch validation rows carry one (tel.set_epoch's pattern)
    epochs = RunBuilder(root, "epochs").scalars("loss", "train", [1.0] * 9)
    epochs.scalars("loss", "val", [0.9, 0.8], steps=[3, 6], epochs=[0, 1])
    epochs.tensors("w", "grad", [1.0] * 9).finish().write()
    # a payload that is not JSON, a metric defined against its name, a failure
    odd = RunBuilder(root, "odd").scalars("score", "val", [3.0, 2.0, float("nan")])
    odd.event("metric_defined", {"name": "score", "goal": "min"})
    odd._add(Stream.EVENTS, 2, None, {"kind": ["note"], "payload": ["{torn"]})
    odd.fail("ValueError", "bad shape").write()
    # running (seen just now) and crashed (seen an hour ago, never ended)
    RunBuilder(root, "live", start=time.time() - 5).scalars("loss", "train", [1.0]).write()
    RunBuilder(root, "dead").scalars("loss", "train", [1.0]).write()
    # an older writer's file: a column of the current schema missing
    path = next((root / "resumed" / "system").glob("0-0-*.parquet"))
    table = pq.read_table(path)
    pq.write_table(
        table.drop_columns(["grad_carried_norm"]).replace_schema_metadata(table.schema.metadata),
        path,
    )
    return root


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("views") / "runs")


def _value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    return v


def _rows(frame: pl.DataFrame, view: str) -> list[tuple[Any, ...]]:
    if view == "runs":  # config: the same JSON, not necessarily the same spacing
        frame = frame.with_columns(
            pl.col("config").map_elements(lambda c: json.dumps(json.loads(c)), pl.String)
        )
    return sorted((tuple(_value(v) for v in row) for row in frame.iter_rows()), key=repr)


@pytest.mark.parametrize("view", VIEWS)
def test_each_spark_view_holds_what_the_duckdb_view_holds(
    spark: SparkSession, store_root: Path, view: str
) -> None:
    registered = register_views(spark, store_root)
    store = open_store(store_root)
    duck = store.sql(f"SELECT * FROM {view}")
    theirs = pl.from_arrow(spark.sql(f"SELECT * FROM {view}").toArrow())
    assert isinstance(theirs, pl.DataFrame)
    assert theirs.columns == duck.columns
    for column, a, b in zip(duck.columns, duck.dtypes, theirs.dtypes, strict=True):
        if isinstance(a, pl.Datetime):  # DuckDB says Etc/UTC, Spark UTC
            assert isinstance(b, pl.Datetime) and b.time_zone in ("UTC", "Etc/UTC"), column
        else:
            assert a == b, column
    assert duck.height > 0 or view in ("samples", "exports")
    assert _rows(theirs, view) == _rows(duck, view)
    assert registered.unreadable == store.unreadable


def test_the_cases_the_views_take_care_of_are_in_the_store(
    spark: SparkSession, store_root: Path
) -> None:
    """Guards the comparison above: each case is there and read as the DuckDB view reads it."""
    # 30 minutes: "live" was seen when the module's store was made, which the tests
    # before this one may have taken over a minute to get past (the default 60 s)
    register_views(spark, store_root, stale_after_s=1800)

    def one(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in spark.sql(sql).collect()]

    assert one("SELECT step, value FROM scalars WHERE run_id = 'resumed' ORDER BY step") == [
        (1, 3.0),
        (2, 2.0),
        (3, 1.5),
        (4, 0.5),
    ]
    assert one("SELECT DISTINCT epoch FROM tensors WHERE run_id = 'epochs' ORDER BY 1") == [
        (0,),
        (1,),
        (2,),
    ]
    assert one("SELECT payload FROM events WHERE kind = 'note'") == [(None,)]
    assert one("SELECT goal, defined FROM metric_goals WHERE name = 'score'") == [("min", True)]
    statuses = dict(one("SELECT run_id, status FROM runs WHERE run_id IN ('live', 'dead', 'odd')"))
    assert statuses == {"live": "running", "dead": "crashed", "odd": "failed"}
    assert one("SELECT error FROM runs WHERE run_id = 'odd'") == [("ValueError: bad shape",)]
    assert one(
        "SELECT count(*) FROM system WHERE run_id = 'resumed' AND grad_carried_norm IS NULL"
    ) == [(4,)]


def test_register_views_on_a_missing_store_names_it(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        register_views(spark, tmp_path / "nowhere")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP VIEW runs",
        "CREATE TABLE t AS SELECT * FROM runs",
        "INSERT INTO t SELECT * FROM runs",
        "WITH a AS (SELECT 1 AS x) INSERT INTO t SELECT * FROM a",
        "SET spark.sql.runSQLOnFiles=true",
        "CACHE TABLE runs",
        "ADD JAR /tmp/x.jar",
        "EXPLAIN CREATE TABLE t AS SELECT 1",
    ],
)
def test_only_queries_are_run(spark: SparkSession, sql: str) -> None:
    with pytest.raises(SparkQueryError, match="read-only"):
        check_query(spark, sql)


def test_files_cannot_be_read_by_path(spark: SparkSession, store_root: Path) -> None:
    register_views(spark, store_root)
    some = next((store_root / "resumed" / "scalars").glob("*.parquet"))
    with pytest.raises(SparkQueryError):
        run_query(spark, f"SELECT * FROM parquet.`{some}`")
    assert run_query(spark, "EXPLAIN SELECT count(*) FROM runs").num_rows == 1


def test_query_engine_spark_prints_what_engine_duckdb_prints(
    spark: SparkSession, store_root: Path
) -> None:
    sql = (
        "SELECT run_id, count(*) AS n, max(norm) AS top FROM tensors "
        "WHERE kind = 'grad' GROUP BY run_id ORDER BY run_id"
    )
    runner = CliRunner()
    local = runner.invoke(main, ["query", str(store_root), sql, "--format", "csv"])
    remote = runner.invoke(
        main, ["query", str(store_root), sql, "--format", "csv", "--engine", "spark"]
    )
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert remote.stdout == local.stdout


def test_query_engine_spark_reads_findings_and_lists_its_views(
    spark: SparkSession, tmp_path: Path
) -> None:
    cases.divergence(tmp_path).write()
    runner = CliRunner()
    found = runner.invoke(
        main,
        [
            "query",
            str(tmp_path),
            "SELECT DISTINCT rule FROM findings ORDER BY rule",
            "--engine",
            "spark",
            "--format",
            "json",
        ],
    )
    assert found.exit_code == 0, found.output
    assert {"rule": "divergence"} in json.loads(found.stdout)
    schema = runner.invoke(
        main, ["query", str(tmp_path), "--schema", "--engine", "spark", "--format", "json"]
    )
    listed = {v["view"]: [c["name"] for c in v["columns"]] for v in json.loads(schema.stdout)}
    assert set(listed) == set(VIEWS)
    assert listed["scalars"][:3] == ["run_id", "rank", "attempt"]


def test_query_engine_spark_refusals_and_timeouts_exit_like_duckdb(
    spark: SparkSession, tmp_path: Path
) -> None:
    cases.healthy(tmp_path).write()
    runner = CliRunner()
    refused = runner.invoke(main, ["query", str(tmp_path), "DROP VIEW runs", "--engine", "spark"])
    assert refused.exit_code == 2 and "read-only" in refused.output
    unknown = runner.invoke(
        main, ["query", str(tmp_path), "SELECT * FROM nope", "--engine", "spark"]
    )
    assert unknown.exit_code == 2 and "views: runs" in unknown.output
    slow = (
        "SELECT count(*) FROM range(300000) a CROSS JOIN range(300000) b "
        "WHERE (a.id * b.id) % 7 = 3"
    )
    started = time.monotonic()
    stopped = runner.invoke(
        main, ["query", str(tmp_path), slow, "--engine", "spark", "--timeout", "1"]
    )
    assert stopped.exit_code == 124, stopped.output
    assert "--timeout" in stopped.output and time.monotonic() - started < 60
