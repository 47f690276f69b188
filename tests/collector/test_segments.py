"""Segment I/O: a segment is published whole, under its final name, or not at all."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from store import segments
from store.records import Rows, build_table
from store.schema import SCHEMA_VERSION_KEY, Stream
from store.segments import write_segment


def _table(n: int = 3):
    rows = Rows(
        Stream.SCALARS,
        step=1,
        epoch=None,
        wall_time=1_700_000_000.0,
        columns={
            "name": ["loss"] * n,
            "split": ["train"] * n,
            "value": [float(i) for i in range(n)],
        },
    )
    return build_table(Stream.SCALARS, [rows], run_id="r", rank=0, attempt=0, first_seq=0)


def test_write_segment_publishes_a_readable_file_and_no_temp_file(tmp_path: Path) -> None:
    directory = tmp_path / "run" / "scalars"  # created on demand
    table = _table()
    path = write_segment(table, directory, "0-0-000000.parquet")
    assert path == directory / "0-0-000000.parquet"
    assert [p.name for p in directory.iterdir()] == ["0-0-000000.parquet"]
    back = pq.read_table(path)
    assert back.equals(table)
    assert back.schema.metadata[SCHEMA_VERSION_KEY] == table.schema.metadata[SCHEMA_VERSION_KEY]


def test_write_segment_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    write_segment(_table(2), tmp_path, "0-0-000000.parquet")
    write_segment(_table(5), tmp_path, "0-0-000000.parquet")
    assert pq.read_table(tmp_path / "0-0-000000.parquet").num_rows == 5
    assert [p.name for p in tmp_path.iterdir()] == ["0-0-000000.parquet"]


def _failing_parquet(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> list[Path]:
    """Make ``write_table`` inside store.segments write some bytes, then raise."""
    seen: list[Path] = []

    def write_table(table: Any, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 half a file")
        where.flush()
        seen.append(Path(where.name))
        raise error

    fake = types.SimpleNamespace(write_table=write_table)
    monkeypatch.setattr(segments, "pq", fake)
    return seen


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_neither_final_name_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    temps = _failing_parquet(monkeypatch, error)
    with pytest.raises(type(error)):
        write_segment(_table(), tmp_path, "0-0-000000.parquet")
    assert len(temps) == 1
    assert temps[0].parent == tmp_path and temps[0].name.startswith(".")  # it did exist
    assert not (tmp_path / "0-0-000000.parquet").exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previously_published_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_segment(_table(2), tmp_path, "0-0-000000.parquet")
    _failing_parquet(monkeypatch, OSError(5, "Input/output error"))
    with pytest.raises(OSError):
        write_segment(_table(5), tmp_path, "0-0-000000.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["0-0-000000.parquet"]
    assert pq.read_table(tmp_path / "0-0-000000.parquet").num_rows == 2


def test_failed_fsync_leaves_neither_final_name_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(segments.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_segment(_table(), tmp_path, "0-0-000000.parquet")
    assert list(tmp_path.iterdir()) == []


def test_a_segment_has_bounded_row_groups_with_statistics_and_dictionary_strings(
    tmp_path: Path,
) -> None:
    n = segments.ROW_GROUP_ROWS + 10  # more than one row group's worth
    path = write_segment(_table(n), tmp_path, "0-0-000000.parquet")
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2  # not one giant group
    assert meta.row_group(0).num_rows == segments.ROW_GROUP_ROWS
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for col in ("step", "seq", "name", "split", "value"):
            stats = group.column(names.index(col)).statistics
            assert stats is not None and stats.has_min_max, (g, col)
        for col in ("run_id", "name", "split"):  # strings: dictionary encoded
            assert "RLE_DICTIONARY" in group.column(names.index(col)).encodings, col
        assert "RLE_DICTIONARY" not in group.column(names.index("value")).encodings
