"""``telemetry query``: read-only SQL over the views, formats, and errors that say what exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from analysis import open_store
from analysis.store import MACRO_VIEWS, SUMMARY_VIEWS, VIEWS
from telemetry.cli import main
from telemetry.commands.query import TABLE_ROWS, run_query, run_stoppable
from telemetry.common import EXIT_STORE, QueryError
from tests.analysis import cases


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    cases.healthy(root).write()
    cases.divergence(root).write()
    return root


def _query(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["query", str(root), *args])
    return result.exit_code, result.output


def test_query_prints_a_table_of_the_result(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT run_id, steps FROM runs ORDER BY run_id")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["run_id", "steps"]
    assert lines[2].split() == ["diverged", "60"] and lines[3].split() == ["healthy", "100"]


def test_query_csv_json_and_parquet_carry_the_same_rows(store_path: Path, tmp_path: Path) -> None:
    sql = "SELECT run_id, step, value FROM scalars WHERE name = 'loss' ORDER BY run_id, step"
    with open_store(store_path) as store:
        expected = store.sql(sql)
    code, out = _query(store_path, sql, "--format", "csv")
    assert code == 0
    assert pl.read_csv(out.encode()).equals(expected)
    code, out = _query(store_path, sql, "--format", "json")
    rows = json.loads(out)
    assert len(rows) == len(expected)
    # NaN/Inf of a diverged loss are strings in strict JSON
    assert [r["value"] for r in rows] == [
        v if v == v and abs(v) != float("inf") else ("NaN" if v != v else "Infinity")
        for v in expected["value"].to_list()
    ]
    target = tmp_path / "loss.parquet"
    code, out = _query(store_path, sql, "--format", "parquet", "-o", str(target))
    assert code == 0 and f"wrote {len(expected)} row(s) to {target}" in out
    assert pl.read_parquet(target).equals(expected)


def test_parquet_needs_an_output_file(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT 1", "--format", "parquet")
    assert code == 2 and "give -o FILE" in out


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("COPY (SELECT * FROM runs) TO '{tmp}/out.csv'", "statement COPY is refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_text('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
        ("ATTACH '{tmp}/other.db'", "statement ATTACH is refused"),
        ("INSTALL httpfs", "statement"),
        ("DROP VIEW runs", "statement DROP is refused"),
        ("CREATE TABLE t AS SELECT 1", "statement CREATE is refused"),
        ("SET enable_external_access = true", "statement SET is refused"),
        ("SELECT 1; DROP VIEW runs", "one statement at a time, got 2"),
        ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "statement CREATE is refused"),
    ],
)
def test_query_is_read_only(store_path: Path, tmp_path: Path, sql: str, says: str) -> None:
    code, out = _query(store_path, sql.format(tmp=tmp_path))
    assert code == 2, out
    assert says in out
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere
    code, out = _query(store_path, "SELECT count(*) AS n FROM runs")
    assert out.splitlines()[-1].strip() == "2"  # the views are intact


def test_a_locked_store_refuses_file_access_even_to_the_python_api(store_path: Path) -> None:
    with open_store(store_path) as store:
        store.lock()
        assert store.sql("SELECT count(*) AS n FROM scalars")["n"][0] > 0  # tables still read
        with pytest.raises(duckdb.PermissionException):
            store.sql("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            store.sql("SET enable_external_access = true")


def test_unknown_view_lists_the_views(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT * FROM scalar")
    assert code == 2
    assert 'Did you mean "scalars"?' in out
    assert "views: runs, " + ", ".join(VIEWS) in out


def test_unknown_column_lists_the_columns_of_the_named_views(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT lr FROM runs JOIN scalars USING (run_id)")
    assert code == 2
    assert 'Referenced column "lr" not found' in out
    assert "columns of runs: run_id, name, status, steps" in out
    assert "columns of scalars: run_id, rank, attempt, seq, step, epoch, wall_time, name" in out


def test_explain_of_a_select_is_allowed(store_path: Path) -> None:
    code, out = _query(store_path, "EXPLAIN ANALYZE SELECT count(*) FROM scalars")
    assert code == 0, out


def test_syntax_errors_are_shown_with_duckdbs_pointer(store_path: Path) -> None:
    with open_store(store_path) as store, pytest.raises(QueryError, match="syntax error"):
        run_query(store, "SELEC 1")


def test_schema_lists_every_view_with_meaning_and_columns(store_path: Path) -> None:
    code, out = _query(store_path, "--schema")
    assert code == 0
    headers = [line.split()[0] for line in out.splitlines() if line and not line[0].isspace()]
    listed = ["runs", *VIEWS, *SUMMARY_VIEWS, *MACRO_VIEWS, "metric_goals", "findings"]
    assert headers == listed
    assert "one row per run" in out
    assert re.search(r"^    step_time_s +DOUBLE$", out, re.MULTILINE)
    code, out = _query(store_path, "--schema", "--format", "json")
    views = json.loads(out)
    assert [v["view"] for v in views] == listed
    assert all(v["meaning"] and v["columns"] for v in views)


def test_query_reads_sql_from_stdin(store_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["query", str(store_path), "-", "--format", "csv"], input="SELECT 41 + 1 AS x"
    )
    assert result.output.split() == ["x", "42"]


def test_query_needs_sql_or_schema_and_a_store(store_path: Path, tmp_path: Path) -> None:
    code, out = _query(store_path)
    assert code == 2 and "give a SQL query" in out
    code, out = _query(tmp_path / "missing", "SELECT 1")
    assert code == EXIT_STORE and "does not exist" in out


def test_an_unwritable_output_is_a_clear_error(store_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.csv"
    code, out = _query(store_path, "SELECT 1", "--format", "csv", "-o", str(target))
    assert code == 2 and f"cannot write {str(target)!r}" in out


def test_a_large_result_is_streamed_whole_in_every_program_format(
    store_path: Path, tmp_path: Path
) -> None:
    sql = "SELECT range AS i FROM range(100_000)"  # several batches of BATCH_ROWS
    code, out = _query(store_path, sql, "--format", "csv")
    assert code == 0 and out.splitlines() == ["i", *map(str, range(100_000))]
    code, out = _query(store_path, sql, "--format", "json")
    assert code == 0 and json.loads(out) == [{"i": i} for i in range(100_000)]
    target = tmp_path / "i.parquet"
    code, out = _query(store_path, sql, "--format", "parquet", "-o", str(target))
    assert code == 0 and "wrote 100000 row(s)" in out
    assert pl.read_parquet(target)["i"].to_list() == list(range(100_000))


def test_the_table_shows_max_rows_and_counts_the_rest(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT range AS i FROM range(100_000)")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + TABLE_ROWS + 1
    assert lines[-1].startswith(f"({100_000 - TABLE_ROWS:,} more row(s) not shown")
    code, out = _query(store_path, "SELECT range AS i FROM range(30)", "--max-rows", "0")
    assert out.splitlines()[-1].strip() == "29"


def test_an_error_half_way_through_the_result_is_a_query_error(store_path: Path) -> None:
    sql = "SELECT CAST(CASE WHEN range < 50_000 THEN '1' ELSE 'x' END AS INT) FROM range(60_000)"
    code, out = _query(store_path, sql, "--format", "csv")
    assert code == 2
    assert "Error: Conversion Error: Could not convert string 'x' to INT32" in out
    assert "Traceback" not in out


def test_run_stoppable_raises_the_work_s_error_in_the_calling_thread(store_path: Path) -> None:
    def work() -> None:
        raise QueryError("from the worker")

    with open_store(store_path) as store, pytest.raises(QueryError, match="from the worker"):
        run_stoppable(store.con.cursor(), work, timeout=None)


def test_timeout_is_a_positive_number_of_seconds(store_path: Path) -> None:
    code, out = _query(store_path, "SELECT 1", "--timeout", "0")
    assert code == 2 and "--timeout" in out
    code, out = _query(store_path, "SELECT 1 AS x", "--timeout", "30", "--format", "csv")
    assert code == 0 and out == "x\n1\n"


def test_findings_are_a_table_a_query_can_read(store_path: Path) -> None:
    """What analyze finds, as rows: the same findings, with evidence as JSON."""
    analyzed = CliRunner().invoke(main, ["analyze", str(store_path), "--format", "json"])
    expected = json.loads(analyzed.output)["findings"]
    sql = (
        "SELECT rule, severity, run_id, subject, step, message, suggestion, evidence, caused_by "
        "FROM findings"
    )
    code, out = _query(store_path, sql, "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
    key = lambda f: (f["run_id"], f["rule"], f["subject"] or "", f["step"] or 0)  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key) and rows
    code, out = _query(
        store_path,
        "SELECT rule, evidence->>'$.first_nonfinite_step' AS first_bad FROM findings "
        "WHERE run_id = 'diverged' AND rule = 'divergence'",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)[0]["first_bad"] is not None, out


def test_a_query_that_does_not_name_findings_runs_no_diagnosis(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analysis.engine

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("diagnosed for a query that does not read findings")

    monkeypatch.setattr(analysis.engine, "diagnose", refuse)
    code, out = _query(store_path, "SELECT count(*) AS n FROM runs")
    assert code == 0, out
    code, out = _query(store_path, "--schema", "--format", "json")
    assert code == 0, out
    views = {v["view"]: [c["name"] for c in v["columns"]] for v in json.loads(out)}
    assert views["findings"] == [
        "rule",
        "severity",
        "run_id",
        "subject",
        "step",
        "message",
        "suggestion",
        "evidence",
        "caused_by",
    ]
    assert views["metric_goals"] == ["run_id", "name", "goal", "defined"]
