"""``telemetry.output``: results streamed batch by batch, control characters escaped."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import math
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telemetry.common import CliError, printable
from telemetry.output import OutputProblem, emit

HOSTILE = "run\x1b]0;owned\x07\x9b31m\x7f\x00\u202e\n\t\r"
"""Control characters a run's strings can hold (Arrow holds UTF-8: no lone surrogates)."""


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name, café, 学习", "plain name, café, 学习"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x9b2J", "\\x9b2J"),  # C1: a one-byte CSI
        ("a\x7fb\x00", "a\\x7fb\\x00"),
        ("tab\tnew\nret\r", "tab\\tnew\\nret\\r"),
        ("\u202eevil", "\\u202eevil"),  # bidirectional override
        ("lone \udcff", "lone \\udcff"),  # a file name that is not UTF-8
        ("C:\\runs\\a", "C:\\runs\\a"),  # backslashes stay as they are
    ],
)
def test_printable_shows_control_characters_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(raw).encode("utf-8")  # prints on any UTF-8 terminal


def test_printable_keeps_the_characters_asked_for() -> None:
    assert printable("line 1\nline\x1b 2", keep="\n") == "line 1\nline\\x1b 2"


def test_cli_errors_show_their_message_escaped() -> None:
    assert (
        OutputProblem(f"bad {HOSTILE}").format_message()
        == f"bad {printable(HOSTILE, keep=chr(10))}"
    )
    assert issubclass(OutputProblem, CliError) and issubclass(CliError, click.ClickException)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _frames(log: list[int], out: io.StringIO, batches: int, rows: int) -> Iterator[pl.DataFrame]:
    """``batches`` frames of ``rows`` rows; ``log`` gets the output's length at each pull."""
    for b in range(batches):
        log.append(len(out.getvalue()))
        yield pl.DataFrame({"i": list(range(b * rows, (b + 1) * rows)), "s": ["x"] * rows})


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_each_batch_is_written_before_the_next_is_read(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    log: list[int] = []
    emit(_frames(log, out, batches=4, rows=10), fmt, None, max_rows=15)
    assert len(log) == 4
    # output grew between pulls: nothing waits for the whole result
    assert log[0] == 0 and log[2] > 0
    if fmt != "table":  # the table is written once max_rows are in, the rest counted
        assert log[1] < log[2] < log[3]


def test_parquet_writes_each_batch_before_the_next_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    write_table = pq.ParquetWriter.write_table

    def logged(self: pq.ParquetWriter, table: pa.Table, *args: Any, **kwargs: Any) -> None:
        events.append("write")
        write_table(self, table, *args, **kwargs)

    def frames() -> Iterator[pl.DataFrame]:
        for b in range(3):
            events.append("read")
            yield pl.DataFrame({"i": [b]})

    monkeypatch.setattr(pq.ParquetWriter, "write_table", logged)
    emit(frames(), "parquet", tmp_path / "out.parquet", quiet=True)
    assert events == ["read", "write"] * 3
    assert pl.read_parquet(tmp_path / "out.parquet")["i"].to_list() == [0, 1, 2]


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_no_batch_is_kept_once_it_is_written(fmt: str, tmp_path: Path) -> None:
    """Memory does not grow with the result: batch k is gone when batch k + 2 is read
    (the first may stay: it carries the columns)."""
    pulled: list[weakref.ref[pl.DataFrame]] = []
    kept: list[int] = []

    def frames() -> Iterator[pl.DataFrame]:
        for b in range(8):
            gc.collect()
            kept.extend(k for k, ref in enumerate(pulled[1 : b - 1], start=1) if ref())
            frame = pl.DataFrame({"i": list(range(b * 100, (b + 1) * 100))})
            pulled.append(weakref.ref(frame))
            yield frame

    emit(frames(), fmt, tmp_path / "out", quiet=True, max_rows=50)
    assert len(pulled) == 8 and kept == []


def test_table_shows_max_rows_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    emit(_frames([], out, batches=3, rows=1000), "table", None, max_rows=5)
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[2:7]] == ["0", "1", "2", "3", "4"]
    assert lines[7].startswith("(2,995 more row(s) not shown: --max-rows N")
    assert len(lines) == 8


def test_json_is_written_as_json_dumps_would_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    df = pl.DataFrame(
        {
            "n": [1, None, 3],
            "x": [0.5, math.nan, math.inf],
            "s": ["a\x1b]0;t\x07", "é", None],
            "l": [[1.0, 2.0], [], None],
            "b": [b"\x00\x01", None, b""],
            "t": [dt.datetime(2025, 1, 2, 3, 4, 5), None, None],
        }
    )
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    emit(iter([df.head(1), df.tail(2)]), "json", None)
    rows = [
        {
            "n": 1,
            "x": 0.5,
            "s": "a\x1b]0;t\x07",
            "l": [1.0, 2.0],
            "b": "AAE=",
            "t": "2025-01-02T03:04:05",
        },
        {"n": None, "x": "NaN", "s": "é", "l": [], "b": None, "t": None},
        {"n": 3, "x": "Infinity", "s": None, "l": None, "b": "", "t": None},
    ]
    assert out.getvalue() == json.dumps(rows, indent=2) + "\n"
    assert "\x1b" not in out.getvalue()  # JSON escapes control characters itself
    out.seek(0)
    out.truncate()
    emit(df.head(0), "json", None)
    assert out.getvalue() == "[]\n"


def test_the_table_escapes_cells_and_column_names(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    emit(pl.DataFrame({f"name{HOSTILE}": [HOSTILE]}), "table", None)
    text = out.getvalue()
    assert "\\x1b]0;owned\\x07\\x9b31m\\x7f\\x00\\u202e\\n\\t\\r" in text
    assert printable(text, keep="\n") == text  # no raw control character at all


def test_csv_carries_values_as_they_are_except_to_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df = pl.DataFrame({"name": ["ok\x1b]0;t\x07"]})
    piped = io.StringIO()
    monkeypatch.setattr("sys.stdout", piped)
    emit(df, "csv", None)
    assert pl.read_csv(piped.getvalue().encode()).equals(df)  # exact, for programs
    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    emit(df, "csv", None)
    assert terminal.getvalue() == "name\nok\\x1b]0;t\\x07\n"  # read by a person


@pytest.mark.parametrize("fmt", ["csv", "json", "table", "parquet"])
def test_a_result_that_fails_half_way_leaves_no_file(fmt: str, tmp_path: Path) -> None:
    target = tmp_path / "out.data"

    def failing() -> Iterator[pl.DataFrame]:
        yield pl.DataFrame({"i": [1, 2]})
        raise click.ClickException("the query failed on row 3")

    with pytest.raises(click.ClickException, match="row 3"):
        emit(failing(), fmt, target)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_a_complete_file_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    emit(iter([pl.DataFrame({"i": [1]}), pl.DataFrame({"i": [2]})]), "csv", target, quiet=True)
    assert target.read_text() == "i\n1\n2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_output_file_has_the_umask_s_mode_and_a_device_is_written_in_place(
    tmp_path: Path,
) -> None:
    umask = os.umask(0o022)
    try:
        emit(pl.DataFrame({"i": [1]}), "csv", tmp_path / "out.csv", quiet=True)
    finally:
        os.umask(umask)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    emit(pl.DataFrame({"i": [1]}), "parquet", Path(os.devnull), quiet=True)
    assert Path(os.devnull).is_char_device()
