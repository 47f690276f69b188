"""The readers against a hostile store: files that look like ours and are not.

Every case plants something next to a good run and opens the store both ways (every
stream, and ``runs_only`` as ``telemetry runs`` does): no crash, no hang, the good
run's rows all there and none twice, and the bad thing named in ``store.unreadable``
(and so in a warning). The last test runs the four read verbs on a store holding
every case at once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import analysis
from store import scan
from store.compaction import compact_run
from store.digest import DIGEST_DIR, Activity, digest_path, write_digest
from store.schema import SCHEMA_VERSION_KEY, SCHEMAS, Stream
from telemetry.cli import main
from tests.builders import RunBuilder

GOOD = "good"
OTHER = "other"


def _run(root: Path, run_id: str, *, name: str | None = None, config: Any = None) -> None:
    """A finished run of 6 steps in two writes, compacted, then one more write (so
    each stream holds a compacted segment and a plain one), and its digest."""
    run = RunBuilder(root, run_id, name=name, config=config or {"lr": 0.1}, start=1e9)
    run.scalars("loss", "train", [2.0, 1.5, 1.0]).tensors("w", "grad", [1.0, 0.9, 0.8])
    run.system([0.1] * 3, [0.01] * 3).write()
    run.scalars("loss", "train", [0.9, 0.8], steps=[4, 5]).write()
    compact_run(root / run_id)
    run.scalars("loss", "train", [0.7], steps=[6]).finish().write()
    _write_digest(root / run_id, run_id)


def _write_digest(run_dir: Path, run_id: str) -> None:
    """The digest a closing writer would write (``store.digest``), from the rows."""
    activity = Activity()
    for stream in Stream:
        for path in sorted((run_dir / stream.value).glob("*.parquet")):
            activity.add(stream, pq.read_table(path))
    write_digest(run_dir, run_id, 0, 0, activity)


def _rows(store: analysis.Store, run_id: str) -> dict[str, int]:
    """Rows of ``run_id`` per stream as loaded, each (rank, attempt, seq) counted once."""
    out = {}
    for stream in (Stream.EVENTS, Stream.SCALARS, Stream.TENSORS, Stream.SYSTEM):
        n, distinct = store.sql(
            f"SELECT count(*) AS n, count(DISTINCT (rank, attempt, seq)) AS d "
            f"FROM raw_{stream.value} WHERE run_id = $r",
            {"r": run_id},
        ).row(0)
        assert n == distinct, f"{stream.value}: {n - distinct} rows of {run_id} read twice"
        out[stream.value] = n
    return out


def _runs(store: analysis.Store) -> dict[str, tuple[str, int, str]]:
    df = store.sql("SELECT run_id, name, steps, status FROM runs")
    return {r["run_id"]: (r["name"], r["steps"], r["status"]) for r in df.to_dicts()}


GOOD_ROWS = {"events": 2, "scalars": 6, "tensors": 3, "system": 3}
GOOD_RUN = (GOOD, 6, "finished")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root, GOOD)
    return root


def _named(store: analysis.Store, *parts: str) -> list[str]:
    """The reasons given for the skipped paths that end with ``parts``."""
    return [u.reason for u in store.unreadable if u.path.parts[-len(parts) :] == parts]


@contextmanager
def _opened_both_ways(root: Path) -> Iterator[tuple[analysis.Store, analysis.Store]]:
    with analysis.open_store(root) as full, analysis.open_store(root, runs_only=True) as listed:
        yield full, listed


def _check_good(full: analysis.Store, listed: analysis.Store) -> None:
    assert _rows(full, GOOD) == GOOD_ROWS
    assert _runs(full)[GOOD] == GOOD_RUN
    assert _runs(listed)[GOOD] == GOOD_RUN


def _replace(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite a segment with ``change`` applied, keeping its schema metadata."""
    table = pq.read_table(path)
    pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), path)


def _one_segment(run_dir: Path, stream: Stream) -> Path:
    return sorted((run_dir / stream.value).glob("*.parquet"))[-1]


# -- look-alike files (issue 14, item 4) ----------------------------------------------------


def test_a_segment_with_a_string_value_column_is_skipped_and_named(root: Path) -> None:
    _run(root, OTHER)
    bad = _one_segment(root / OTHER, Stream.SCALARS)
    _replace(
        bad,
        lambda t: t.set_column(
            t.schema.get_field_index("value"), "value", pa.array(["x"] * t.num_rows)
        ),
    )
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert any("value" in r for r in _named(full, OTHER, "scalars", bad.name))
        assert _rows(full, OTHER)["scalars"] == 5  # the other segment of that run still read
        assert analysis.diagnose(full).runs.height == 2


def test_a_segment_of_foreign_columns_is_skipped_and_named(root: Path) -> None:
    _run(root, OTHER)
    bad = _one_segment(root / OTHER, Stream.SCALARS)
    _replace(
        bad,
        lambda t: pa.table({"foo": ["x"] * t.num_rows, "run_id": t["run_id"], "step": t["step"]}),
    )
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _named(full, OTHER, "scalars", bad.name)
        assert _runs(full)[OTHER] == (OTHER, 6, "finished")


def test_columns_this_reader_does_not_know_are_left_out_and_the_rows_read(root: Path) -> None:
    # A newer writer may add a nullable column without a schema bump: not an error.
    bad = _one_segment(root / GOOD, Stream.SCALARS)
    _replace(bad, lambda t: t.append_column("extra", pa.array([[1]] * t.num_rows)))
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert "extra" not in full.sql("SELECT * FROM scalars LIMIT 0").columns
        assert full.unreadable == []


def test_a_file_where_a_stream_directory_belongs_is_named(root: Path) -> None:
    _run(root, OTHER)
    shutil.rmtree(root / OTHER / "system")
    (root / OTHER / "system").write_text("not a directory")
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _named(full, OTHER, "system")
        assert _rows(full, OTHER)["scalars"] == 6


@contextmanager
def _never_opened(fifos: list[Path]) -> Iterator[list[Path]]:
    """Hang guard: watches ``fifos`` while the body runs; a FIFO someone opens for
    reading is recorded (the returned list) and released at once (a writer opens and
    closes it: the reader sees end of file instead of hanging)."""
    opened: list[Path] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.002):
            for fifo in fifos:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as e:
                    if e.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading
                        raise
                    continue
                opened.append(fifo)
                os.close(fd)

    watcher = threading.Thread(target=watch, name="fifo-guard", daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        done.set()
        watcher.join()


def test_fifos_named_like_store_files_are_named_and_never_opened(root: Path) -> None:
    _run(root, OTHER)
    fifos = [
        root / GOOD / "scalars" / "0-0-000050.parquet",  # a segment
        root / "fifo-run",  # a run directory
        root / OTHER / "system",  # a stream directory (the real one moved away)
        digest_path(root / OTHER, 0, 0),  # a digest
    ]
    shutil.rmtree(root / OTHER / "system")
    digest_path(root / OTHER, 0, 0).unlink()
    for fifo in fifos:
        os.mkfifo(fifo)
    with _never_opened(fifos) as opened, _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER)["scalars"] == 6
        assert _runs(listed)[OTHER] == (OTHER, 6, "finished")  # from the rows
        for fifo in fifos[:3]:
            assert _named(full, *fifo.relative_to(root).parts), fifo
        assert _named(listed, OTHER, DIGEST_DIR, "0-0.json")
    assert opened == []


# -- rows read twice or hidden (item 5) -----------------------------------------------------


def test_a_copied_run_directory_is_named_not_read_twice(root: Path) -> None:
    shutil.copytree(root / GOOD, root / "good-copy")
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert set(_runs(full)) == {GOOD}
        assert set(_runs(listed)) == {GOOD}
        for store in (full, listed):
            skipped = [u for u in store.unreadable if "good-copy" in u.path.parts]
            assert skipped and all(GOOD in u.reason for u in skipped)


def test_a_run_directory_linked_inside_the_store_is_named_not_read_twice(root: Path) -> None:
    os.symlink(root / GOOD, root / "alias")
    os.symlink(".", root / "self")  # the store itself
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert set(_runs(full)) == {GOOD}
        for store in (full, listed):
            assert any("link" in r for r in _named(store, "alias"))
            assert any("link" in r for r in _named(store, "self"))


def test_a_run_directory_linked_from_outside_the_store_is_read(tmp_path: Path, root: Path) -> None:
    _run(tmp_path / "elsewhere", OTHER)
    os.symlink(tmp_path / "elsewhere" / OTHER, root / OTHER)
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER) == GOOD_ROWS
        assert _runs(listed)[OTHER] == (OTHER, 6, "finished")
        assert full.unreadable == listed.unreadable == []


def test_a_segment_of_another_run_is_named_not_read(root: Path) -> None:
    _run(root, OTHER)
    shutil.copy(
        _one_segment(root / OTHER, Stream.SCALARS), root / GOOD / "scalars" / "0-0-000090.parquet"
    )
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER)["scalars"] == 6  # not 7
        assert any(OTHER in r for r in _named(full, GOOD, "scalars", "0-0-000090.parquet"))
        assert _named(listed, GOOD, "scalars", "0-0-000090.parquet")


def test_a_segment_of_another_run_without_statistics_is_named_not_read(root: Path) -> None:
    # Another tool's writer may leave no column statistics: the three columns are read.
    _run(root, OTHER)
    table = pq.read_table(_one_segment(root / OTHER, Stream.SCALARS))
    stray = root / GOOD / "scalars" / "0-0-000090.parquet"
    pq.write_table(table, stray, write_statistics=False)
    assert not pq.read_metadata(stray).row_group(0).column(0).is_stats_set
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER)["scalars"] == 6
        assert any(OTHER in r for r in _named(full, GOOD, "scalars", stray.name))


def test_a_segment_that_is_a_link_is_named_not_read(tmp_path: Path, root: Path) -> None:
    elsewhere = tmp_path / "elsewhere.parquet"
    shutil.copy(_one_segment(root / GOOD, Stream.SCALARS), elsewhere)
    os.symlink(elsewhere, root / GOOD / "scalars" / "0-0-000033.parquet")
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert any("link" in r for r in _named(full, GOOD, "scalars", "0-0-000033.parquet"))


def test_a_segment_whose_rows_belong_to_another_writer_is_named_not_read(root: Path) -> None:
    plain = _one_segment(root / GOOD, Stream.SCALARS)
    shutil.copy(plain, root / GOOD / "scalars" / "1-0-000000.parquet")  # rank 0's rows
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _named(full, GOOD, "scalars", "1-0-000000.parquet")


JUNK = "0-0-000000_999999.parquet"


@pytest.mark.parametrize(
    "junk",
    [
        "garbage",
        "an empty segment",
        "a copy of a real segment",
        "a copy of the compacted one",
        "another run's compacted segment",
    ],
)
def test_a_compacted_segment_that_does_not_hold_what_it_claims_hides_nothing(
    root: Path, junk: str
) -> None:
    scalars = root / GOOD / "scalars"
    compacted, plain = sorted(scalars.glob("*.parquet"))
    if junk == "garbage":
        (scalars / JUNK).write_bytes(b"PAR1" + b"\x00" * 64)
    elif junk == "an empty segment":
        table = pq.read_table(plain)
        pq.write_table(table.slice(0, 0), scalars / JUNK)
    elif junk == "another run's compacted segment":  # its seq values are this run's too
        _run(root, OTHER)
        shutil.copy(sorted((root / OTHER / "scalars").glob("*_*.parquet"))[0], scalars / JUNK)
    else:
        shutil.copy(plain if junk == "a copy of a real segment" else compacted, scalars / JUNK)
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        reasons = _named(full, GOOD, "scalars", JUNK)
        assert reasons and "claims" in reasons[0], reasons
        assert _named(listed, GOOD, "scalars", JUNK)


def test_a_look_alike_inside_a_compacted_range_does_not_unseat_the_compacted_segment(
    root: Path,
) -> None:
    # Another run's segment numbered inside this run's compacted range: its seq values
    # are not in the compacted file, but it is no segment of this writer, so no evidence.
    _run(root, OTHER)
    scalars = root / GOOD / "scalars"
    shutil.copy(_one_segment(root / OTHER, Stream.SCALARS), scalars / "0-0-000002.parquet")
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER)["scalars"] == 6
        assert not any(u.path.name.endswith("_000004.parquet") for u in full.unreadable)


def test_a_compaction_interrupted_before_its_deletes_still_hides_what_it_merged(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path, GOOD, start=1e9)
    for step in range(1, 5):
        run.scalars("loss", "train", [1.0 / step], steps=[step]).write()
    scalars = tmp_path / GOOD / "scalars"
    kept = {p.name: p.read_bytes() for p in scalars.glob("*.parquet")}
    compact_run(tmp_path / GOOD)
    for name, data in kept.items():  # the leftovers of a crash after publishing
        (scalars / name).write_bytes(data)
    with analysis.open_store(tmp_path) as store:
        assert store.unreadable == []
        assert _rows(store, GOOD)["scalars"] == 4
        assert store.segments[Stream.SCALARS] == [p for p in scalars.glob("*_*.parquet")]


# -- noise (item 10) ---------------------------------------------------------------------


def test_many_stray_files_are_listed_but_summarised_in_the_warnings(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(300):
        (root / f"stray-{i:03d}.txt").write_text("x")
        (root / GOOD / "scalars" / f"notes-{i:03d}.txt").write_text("x")
    with (
        caplog.at_level(logging.WARNING, logger="analysis.store"),
        _opened_both_ways(root) as (full, listed),
    ):
        _check_good(full, listed)
        assert len(full.unreadable) == len(listed.unreadable) == 600
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= 2 * 4, lines  # a few lines per open, not one per file
    assert sum("300" in line for line in lines) == 4  # both kinds, both opens
    assert "stray-000.txt" in caplog.text and "notes-000.txt" in caplog.text


def test_skipped_entries_of_many_reasons_are_counted_in_one_last_line(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(100):  # each with a reason of its own: its schema version
        future = SCHEMAS[Stream.SCALARS].with_metadata({SCHEMA_VERSION_KEY: str(i + 2).encode()})
        path = root / GOOD / "scalars" / f"0-{i + 1}-000000.parquet"
        pq.write_table(pa.Table.from_batches([], schema=future), path)
    with (
        caplog.at_level(logging.WARNING, logger="analysis.store"),
        analysis.open_store(root) as store,
    ):
        assert _rows(store, GOOD) == GOOD_ROWS
        assert len(store.unreadable) == 100
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == analysis.store.WARNED_REASONS + 1, lines
    assert "80 more entries" in lines[-1]


def test_symbolic_link_loops_are_named_as_loops(root: Path) -> None:
    os.symlink("loop", root / "loop")
    os.symlink("0-0-000077.parquet", root / GOOD / "scalars" / "0-0-000077.parquet")
    _run(root, OTHER)
    shutil.rmtree(root / OTHER / "tensors")
    os.symlink("tensors", root / OTHER / "tensors")
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        for parts in (("loop",), (GOOD, "scalars", "0-0-000077.parquet"), (OTHER, "tensors")):
            reasons = _named(full, *parts)
            assert reasons and all("loop" in r and r != scan.REMOVED for r in reasons), parts


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_step", 2**70),  # beyond int64
        ("max_step", "6"),  # a string
        ("max_step", True),
        ("first_us", 10**20),  # beyond any timestamp
        ("last_us", -(2**63) - 1),
        ("rank", -1),
        ("attempt", 2.0),
        ("run_id", None),
        ("lifecycle", [{"kind": "run_started", "payload": "{}", "wall_time": 2**64}]),
        ("lifecycle", [{"kind": "heartbeat", "payload": "{}", "wall_time": 0}]),
        ("lifecycle", [{"kind": "run_started", "payload": "\udc80", "wall_time": 0}]),
        ("metrics", [{"name": "loss", "split": "train", "min": "NaN", "max": 1.0}]),
        ("metrics", [{"name": "loss", "split": "train", "min": 2.0, "max": 1.0}]),
        ("metrics", [{"name": "loss", "split": 3, "min": 0.0, "max": 1.0}]),
        ("segments", {"scalars": "0-0-000000.parquet"}),
    ],
)
def test_a_digest_out_of_range_is_ignored_with_one_warning(
    root: Path, field: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = digest_path(root / GOOD, 0, 0)
    body = json.loads(path.read_text())
    body[field] = value
    path.write_text(json.dumps(body))
    with (
        caplog.at_level(logging.WARNING, logger="analysis.store"),
        analysis.open_store(root, runs_only=True) as listed,
    ):
        assert _runs(listed)[GOOD] == GOOD_RUN  # from the rows
        assert [u.path for u in listed.unreadable] == [path]
    assert [r.getMessage() for r in caplog.records if "0-0.json" in r.getMessage()] != []
    assert len(caplog.records) == 1


# -- a payload DuckDB cannot parse (item 1, the reader's part) -----------------------------


def test_a_payload_that_is_not_json_to_duckdb_costs_only_that_payload(root: Path) -> None:
    # json.dumps writes a lone surrogate as the escape \udc80, which DuckDB rejects.
    _run(root, OTHER, name="x\udc80", config={"tag": "y\udc80"})
    with _opened_both_ways(root) as (full, listed):
        _check_good(full, listed)
        assert _rows(full, OTHER) == GOOD_ROWS
        for store in (full, listed):
            run = _runs(store)[OTHER]
            assert run[1:] == (6, "finished")
            assert any("JSON" in u.reason for u in store.unreadable if OTHER in u.path.parts)
        assert analysis.diagnose(full).runs.height == 2
    shutil.rmtree(root / OTHER / DIGEST_DIR)  # the same read from the rows
    with analysis.open_store(root, runs_only=True) as listed:
        assert _runs(listed)[OTHER][1:] == (6, "finished")


# -- all at once, through the CLI ----------------------------------------------------------


def _plant_everything(root: Path) -> None:
    _run(root, "strval")
    _replace(
        _one_segment(root / "strval", Stream.SCALARS),
        lambda t: t.set_column(
            t.schema.get_field_index("value"), "value", pa.array(["x"] * t.num_rows)
        ),
    )
    _run(root, "foreign")
    _replace(
        _one_segment(root / "foreign", Stream.SCALARS),
        lambda t: pa.table({"foo": ["x"] * t.num_rows, "run_id": t["run_id"], "step": t["step"]}),
    )
    _run(root, "odd", name="x\udc80")
    shutil.copytree(root / GOOD, root / "good-copy")
    os.symlink(root / GOOD, root / "alias")
    os.symlink("loop", root / "loop")
    shutil.copy(_one_segment(root / GOOD, Stream.SCALARS), root / GOOD / "scalars" / JUNK)
    (root / "foreign" / "modules").write_text("not a directory")
    os.mkfifo(root / GOOD / "scalars" / "0-0-000050.parquet")
    for i in range(50):
        (root / f"stray-{i:03d}.txt").write_text("x")


@pytest.mark.parametrize("verb", ["runs", "analyze", "query", "report"])
def test_every_read_verb_reads_the_good_run_of_a_store_holding_every_case(
    tmp_path: Path, root: Path, verb: str
) -> None:
    _plant_everything(root)
    args = {
        "runs": ["runs", str(root)],
        "analyze": ["analyze", str(root)],
        "query": ["query", str(root), "SELECT run_id, count(*) AS n FROM scalars GROUP BY run_id"],
        "report": ["report", str(root), "-o", str(tmp_path / "report.html")],
    }[verb]
    with _never_opened([root / GOOD / "scalars" / "0-0-000050.parquet"]) as opened:
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert opened == []
    shown = (tmp_path / "report.html").read_text() if verb == "report" else result.output
    assert GOOD in shown
