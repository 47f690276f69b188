"""open_store: views over whatever is readable, and a list of what was not."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import StoreError, open_store
from analysis.store import VIEWS
from store.schema import SCHEMA_VERSION_KEY, SCHEMAS, Stream, stream_columns
from tests.builders import RunBuilder


def test_empty_store_has_every_view_with_its_columns(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for view in VIEWS:
        df = store.sql(f"SELECT * FROM {view}")
        assert df.is_empty()
        assert set(stream_columns(view)) <= set(df.columns)
    assert store.sql("SELECT * FROM runs").is_empty()
    assert store.run_ids() == []


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        open_store(tmp_path / "file")


def test_runs_view_derives_status_from_events(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "done").scalars("loss", "train", [1.0, 0.5]).finish().write()
    RunBuilder(tmp_path, "broke").scalars("loss", "train", [1.0]).fail("ValueError", "bad").write()
    RunBuilder(tmp_path, "killed", start=time.time() - 3600).scalars("loss", "train", [1.0]).write()
    RunBuilder(tmp_path, "live", start=time.time() - 1).scalars("loss", "train", [1.0]).write()
    runs = open_store(tmp_path).sql("SELECT run_id, status, steps, error FROM runs ORDER BY run_id")
    status = dict(zip(runs["run_id"], runs["status"], strict=True))
    assert status == {"broke": "failed", "done": "finished", "killed": "crashed", "live": "running"}
    error = runs.filter(runs["run_id"] == "broke")["error"][0]
    assert error == "ValueError: bad"


def test_unreadable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r1").scalars("loss", "train", [1.0, 0.5]).finish().write()
    scalars = tmp_path / run.run_id / "scalars"
    (scalars / "0-0-000090.parquet").write_bytes(b"PAR1 garbage")
    good = next(scalars.glob("0-0-*.parquet"))
    (scalars / "0-0-000091.parquet").write_bytes(good.read_bytes()[:40])  # truncated
    (scalars / "notes.txt").write_text("stray")
    (tmp_path / run.run_id / "weird_stream").mkdir()
    future = SCHEMAS[Stream.SCALARS].with_metadata({SCHEMA_VERSION_KEY: b"999"})
    pq.write_table(pa.Table.from_batches([], schema=future), scalars / "0-0-000092.parquet")
    (tmp_path / "README").write_text("a stray file at the top of the store")

    store = open_store(tmp_path)
    assert store.sql("SELECT count(*) AS n FROM scalars")["n"][0] == 2
    reasons = {u.path.name: u.reason for u in store.unreadable}
    assert "Parquet" in reasons["0-0-000090.parquet"]
    assert "Parquet" in reasons["0-0-000091.parquet"]
    assert "schema version 999" in reasons["0-0-000092.parquet"]
    assert "segment" in reasons["notes.txt"]
    assert "stream" in reasons["weird_stream"]
    assert "README" in reasons


def test_temporary_files_are_ignored_silently(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "r1").scalars("loss", "train", [1.0]).finish().write()
    (tmp_path / run.run_id / "scalars" / ".0-0-000009.parquet.123.tmp").write_bytes(b"partial")
    store = open_store(tmp_path)
    assert store.unreadable == []
    assert store.sql("SELECT count(*) AS n FROM scalars")["n"][0] == 1


def test_latest_attempt_wins_for_replayed_steps(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r1").scalars("loss", "train", [3.0, 2.0, 1.0]).write()
    resumed = RunBuilder(tmp_path, "r1", attempt=1)
    resumed.scalars("loss", "train", [1.5, 0.5], steps=[3, 4]).finish().write()
    store = open_store(tmp_path)
    df = store.sql("SELECT step, value FROM scalars WHERE name = 'loss' ORDER BY step")
    assert df.rows() == [(1, 3.0), (2, 2.0), (3, 1.5), (4, 0.5)]
    assert store.sql("SELECT attempts, status FROM runs").rows() == [(2, "finished")]


def test_store_is_readable_by_plain_duckdb_and_polars(tmp_path: Path) -> None:
    import duckdb
    import polars as pl

    run = RunBuilder(tmp_path, "r1").scalars("loss", "train", [1.0, 0.5]).finish().write()
    pattern = str(tmp_path / run.run_id / "scalars" / "*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall() == [(2,)]
    assert pl.scan_parquet(pattern).select(pl.len()).collect().item() == 2


def test_nan_filters_are_exact(tmp_path: Path) -> None:
    # DuckDB 2.0.1 keeps NaN rows when `NOT isnan(x)` is pushed into a Parquet scan;
    # the store loads segments into tables so rules see the right rows.
    run = RunBuilder(tmp_path, "r1").tensors("w", "grad", [1.0, float("nan"), 2.0, float("nan")])
    run.finish().write()
    store = open_store(tmp_path)
    assert store.sql("SELECT count(*) AS n FROM tensors WHERE NOT isnan(norm)")["n"][0] == 2


def test_a_resumed_attempt_replaces_only_what_it_records_again(tmp_path: Path) -> None:
    first = RunBuilder(tmp_path, "r1").scalars("loss", "train", [3.0, 2.0])
    first.scalars("acc", "train", [0.1, 0.2]).write()
    RunBuilder(tmp_path, "r1", attempt=1).scalars("loss", "train", [1.5], steps=[2]).write()
    df = open_store(tmp_path).sql("SELECT name, step, value FROM scalars ORDER BY name, step")
    assert df.rows() == [("acc", 1, 0.1), ("acc", 2, 0.2), ("loss", 1, 3.0), ("loss", 2, 1.5)]
