"""The views read the segment files lazily (issue 19): what the in-memory tables
guaranteed still holds.

- NaN and Inf: pyarrow writes float min/max statistics without NaN; DuckDB trusts
  them unless ``parquet_can_have_nan`` is set, and then ``NOT isnan(x)`` keeps NaN
  rows, ``isnan(x)`` in a select list folds to false and row groups holding NaN or
  Inf are skipped. Pinned on multi-row-group, multi-file data, float64 and float32.
- A file removed by a compaction after the store was opened: its run is listed
  again, every row read once.
- ``Store.lock``: the views still read the store; nothing else can be read.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis.store
from analysis import open_store
from store.compaction import compact_run
from store.records import Rows
from store.schema import Stream
from store.writer import Writer
from tests.builders import RunBuilder

ROWS_PER_GROUP = 10


@pytest.fixture(autouse=True, params=["files", "loaded"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: the views reading the files at each query (as a large store's
    are), and the small streams loaded into memory at open (``LOADED_ROWS``)."""
    rows = 0 if request.param == "files" else 10**9
    monkeypatch.setattr(analysis.store, "LOADED_ROWS", rows)
    return str(request.param)


QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}


def _with_row_groups(path: Path, rows: int = ROWS_PER_GROUP) -> None:
    """Rewrite a segment in row groups of ``rows`` rows, its metadata kept."""
    table = pq.read_table(path)
    pq.write_table(table, path, row_group_size=rows)
    assert pq.ParquetFile(path).num_row_groups > 1


@pytest.fixture(scope="module")
def nan_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs (two files per stream), 60 loss points each: one NaN at step 25, +Inf at
    37, -Inf at 49, in row groups of 10 whose other groups are all finite; activations
    (float32 columns) with the same pattern in their mean."""
    root = tmp_path_factory.mktemp("nan")
    for run_id in ("a", "b"):
        values = [1.0 + i / 100 for i in range(60)]
        values[24], values[36], values[48] = math.nan, math.inf, -math.inf
        run = RunBuilder(root, run_id)
        run.scalars("loss", "train", values)
        steps = list(range(1, 61))
        run.activations("fc", "Linear", steps, mean=values)
        run.finish().write()
    for path in root.rglob("*.parquet"):
        if path.parent.name in ("scalars", "activations"):
            _with_row_groups(path)
    return root


@pytest.mark.parametrize(("view", "column"), [("scalars", "value"), ("activations", "mean")])
def test_nan_and_inf_predicates_are_exact_on_parquet(
    nan_store: Path, view: str, column: str
) -> None:
    with open_store(nan_store) as store:

        def count(where: str) -> int:
            return int(store.sql(f"SELECT count(*) AS n FROM {view} WHERE {where}")["n"][0])

        assert count(f"NOT isnan({column})") == 2 * 59
        assert count(f"isnan({column})") == 2
        assert count(f"{column} = 'nan'") == 2
        assert count(f"{column} >= 'inf'") == 4  # DuckDB orders NaN above +Inf
        assert count(f"{column} <= '-inf'") == 2
        assert count(f"NOT isfinite({column})") == 6
        assert count(f"isfinite({column})") == 2 * 57
        flagged = store.sql(
            f"SELECT step, isnan({column}) AS nan FROM {view} ORDER BY run_id, step"
        )
        assert flagged.filter(flagged["nan"])["step"].to_list() == [25, 25]
        assert store.sql(f"SELECT max({column}) AS m FROM {view} WHERE isfinite({column})")["m"][
            0
        ] == pytest.approx(1.59)


@pytest.mark.parametrize("dtype", [pa.float32(), pa.float64()])
def test_the_connection_reads_nan_in_parquet_of_either_float_width(
    tmp_path: Path, dtype: pa.DataType
) -> None:
    """The setting itself, on files of float32 too (the store writes float64 only)."""
    values = [float(i) for i in range(40)]
    values[15] = math.nan
    for k in range(2):
        pq.write_table(
            pa.table({"x": pa.array(values, dtype)}),
            tmp_path / f"{k}.parquet",
            row_group_size=ROWS_PER_GROUP,
        )
    (tmp_path / "runs").mkdir()
    with open_store(tmp_path / "runs") as store:
        scan = f"read_parquet('{tmp_path}/*.parquet')"
        (kept,) = store.con.execute(
            f"SELECT count(*) FROM {scan} WHERE NOT isnan(x)"
        ).fetchone() or (0,)
        (nan,) = store.con.execute(f"SELECT count(*) FROM {scan} WHERE isnan(x)").fetchone() or (0,)
        (flag,) = store.con.execute(f"SELECT sum(isnan(x)::INT) FROM {scan}").fetchone() or (0,)
    assert (kept, nan, flag) == (78, 2, 2)


def _closed_run(root: Path, run_id: str, segments: int = 4) -> None:
    writer = Writer(root, run_id, **QUIET)
    for k in range(segments):
        columns = {"name": ["loss"], "split": ["train"], "value": [float(k)]}
        writer.put(Rows(Stream.SCALARS, step=k, epoch=None, wall_time=1e9 + k, columns=columns))
        assert writer.flush()
    writer.close()


def test_a_compaction_after_the_store_was_opened_is_read_again(tmp_path: Path, reads: str) -> None:
    _closed_run(tmp_path, "racing")
    _closed_run(tmp_path, "bystander")
    with open_store(tmp_path) as store:
        listed = store.files()
        compact_run(tmp_path / "racing")  # a merged file published, the listed ones deleted
        assert any(not p.exists() for p in listed)
        rows = store.sql("SELECT count(*) AS n, count(DISTINCT (run_id, seq)) AS d FROM scalars")
        assert rows.row(0) == (8, 8)  # both runs, every row once
        assert store.unreadable == []
        if reads == "files":  # listed again; loaded rows need no file any more
            assert all(p.exists() for p in store.files())


def test_a_locked_store_reads_its_views_and_nothing_else(tmp_path: Path) -> None:
    _closed_run(tmp_path / "runs", "r")
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with open_store(tmp_path / "runs") as store:
        store.lock()
        assert store.sql("SELECT count(*) AS n FROM scalars")["n"][0] == 4
        with pytest.raises(duckdb.PermissionException):
            store.sql(f"SELECT * FROM read_csv('{outside}')")
        with pytest.raises(duckdb.Error):
            store.sql("SET enable_external_access = true")


def test_a_value_of_another_type_in_one_file_costs_that_file(tmp_path: Path) -> None:
    """A file whose column holds what the schema's type cannot take (found when the
    query reads it, not at open) is left out and named; the rest is read."""
    _closed_run(tmp_path, "r")
    bad = next((tmp_path / "r" / "scalars").glob("*.parquet"))
    table = pq.read_table(bad)
    # seq as text that is not a number: the footer says string, so the listing's type
    # check names it at open already; here the text is a number too large for int64
    seq = pa.array(["9" * 30] * table.num_rows, pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index("seq"), "seq", seq), bad)
    with open_store(tmp_path) as store:
        n = store.sql("SELECT count(*) AS n FROM scalars")["n"][0]
        assert n == 3
        assert [u.path for u in store.unreadable] == [bad]
