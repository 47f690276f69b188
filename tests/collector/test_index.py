"""The run index: closing writers append a line; listing runs reads it instead of every
run's directories while the run is unchanged, and falls back to the digests and
segments for anything it cannot vouch for (no line, a changed run, a torn line)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.output import Output
from store import index, scan
from store.digest import digest_path
from store.index import append_line, index_path, read_index
from store.indexing import record_writer
from store.layout import stream_dir
from store.records import Rows, build_table
from store.scan import list_store
from store.schema import EventKind, Stream
from store.segments import write_segment
from store.writer import Writer

QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}


def _run(root: Path, run_id: str, *, rank: int = 0, seal: bool = True) -> Writer:
    """A writer of ``run_id`` that wrote a few scalars and a lifecycle event, sealed as a
    collector's close does (compaction, digest, index line) unless ``seal`` is False."""
    writer = Writer(root, run_id, rank=rank, **QUIET)
    out = Output(writer, step=0)
    out.event(EventKind.RUN_STARTED, {"name": run_id})
    for step in range(1, 4):
        out.put(Stream.SCALARS, {"name": ["loss"], "split": ["train"], "value": [1.0 / step]})
        out.step = step
        writer.flush()
    if seal:
        out.seal(root / run_id, compact=True)
    return writer


def _listed_from_directories(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the runs ``list_store`` lists from their directories (not the index)."""
    seen: list[str] = []
    real = scan.list_run

    def list_run(run_dir: Path, **kwargs: bool) -> scan.RunListing:
        seen.append(run_dir.name)
        return real(run_dir, **kwargs)

    monkeypatch.setattr(scan, "list_run", list_run)
    return seen


def _bodies(root: Path, run_id: str) -> list[tuple[int, int, str]]:
    """(rank, attempt, sha) of each valid index line of ``run_id``."""
    rows = read_index(root).lines.select(["run_id", "rank", "attempt", "sha"]).to_pylist()
    return [(r["rank"], r["attempt"], r["sha"]) for r in rows if r["run_id"] == run_id]


def _states(root: Path, run_id: str) -> list[dict[str, Any]]:
    """The valid states of ``run_id``'s index lines, in the order they were appended."""
    rows = read_index(root).lines.select(["run_id", "state_dirs", "state_writers"]).to_pylist()
    return [
        {
            "dirs": {d["key"]: d["mtime_ns"] for d in r["state_dirs"]},
            "writers": {w["writer"]: w["sha"] for w in r["state_writers"]},
        }
        for r in rows
        if r["run_id"] == run_id and r["state_dirs"] is not None
    ]


def _digest_writers(root: Path) -> dict[str, list[tuple[int, int]]]:
    """The writers listed by a digest, from the index or from the run's own files."""
    listing = list_store(root, trust_digests=True)
    out = {r.path.name: [(d.rank, d.attempt) for d in r.digests] for r in listing.runs}
    for row in listing.indexed.select(["run_id", "rank", "attempt"]).to_pylist():
        out.setdefault(row["run_id"], []).append((row["rank"], row["attempt"]))
    return out


def test_a_closing_writer_appends_its_digest_and_the_run_state_to_the_index(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "a")
    lines = [json.loads(x) for x in index_path(tmp_path).read_text().splitlines() if x]
    assert len(lines) == 1
    line = lines[0]
    assert (line["run_id"], line["rank"], line["attempt"]) == ("a", 0, 0)
    assert line["digest"] == json.loads(digest_path(tmp_path / "a", 0, 0).read_text())
    assert line["state"]["writers"] == {"0-0": line["sha"]}
    assert set(line["state"]["dirs"]) == {"", "events", "scalars", "digests/0-0.json"}


def test_listing_runs_reads_the_index_and_opens_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for run_id in ("a", "b", "c"):
        _run(tmp_path, run_id)
    expected = _digest_writers(tmp_path)  # the same listing, from each run's own files
    os.rename(index_path(tmp_path), tmp_path / "saved")
    from_digests = _digest_writers(tmp_path)
    os.rename(tmp_path / "saved", index_path(tmp_path))
    seen = _listed_from_directories(monkeypatch)
    assert (
        _digest_writers(tmp_path)
        == from_digests
        == expected
        == {
            "a": [(0, 0)],
            "b": [(0, 0)],
            "c": [(0, 0)],
        }
    )
    assert seen == []  # no run listed from its directories
    listing = list_store(tmp_path, trust_digests=True)
    assert listing.indexed["metrics"][0].as_py() == [
        {"name": "loss", "split": "train", "min": 1 / 3, "max": 1}
    ]
    assert listing.runs == []  # every run listed from the index
    assert list_store(tmp_path).runs[0].files()  # a full listing still lists every segment


def test_a_run_changed_after_its_line_is_listed_from_its_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _run(tmp_path, "a")
    _run(tmp_path, "b")
    # A segment published after the close (another process of the run, or a copy):
    segment = next((tmp_path / "a" / "scalars").iterdir())
    shutil.copy(segment, stream_dir(tmp_path, "a", Stream.SCALARS) / "0-0-000099.parquet")
    seen = _listed_from_directories(monkeypatch)
    runs = list_store(tmp_path, trust_digests=True).runs
    assert seen == ["a"]
    a = runs[0]
    assert a.digests == [] and len(a.segments[Stream.SCALARS]) == 2  # the digest is stale
    assert writer.rank == 0


def test_a_digest_damaged_in_place_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")
    path = digest_path(tmp_path / "a", 0, 0)
    with open(path, "r+b") as fh:  # no rename: no directory changes
        fh.write(b"garbage")
    seen = _listed_from_directories(monkeypatch)
    runs = list_store(tmp_path, trust_digests=True).runs
    assert seen == ["a"]
    assert runs[0].digests == [] and runs[0].files()
    assert [u.path for u in runs[0].unreadable] == [path]  # named by the fallback


def test_a_rank_still_writing_keeps_its_run_off_the_index_until_it_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rank1 = _run(tmp_path, "a", rank=1, seal=False)  # its segments, no digest yet
    _run(tmp_path, "a", rank=0)
    [first] = _bodies(tmp_path, "a")
    assert first[:2] == (0, 0) and _states(tmp_path, "a") == []
    seen = _listed_from_directories(monkeypatch)
    runs = list_store(tmp_path, trust_digests=True).runs
    assert seen == ["a"] and runs[0].segments[Stream.SCALARS]  # rank 1's rows are read
    Output(rank1, step=3).seal(tmp_path / "a", compact=True)
    seen.clear()
    assert _digest_writers(tmp_path) == {"a": [(0, 0), (1, 0)]}
    assert seen == []
    [state] = _states(tmp_path, "a")
    assert set(state["writers"]) == {"0-0", "1-0"}


def test_a_torn_or_damaged_line_costs_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")
    path = index_path(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a crash half-way through a's line
    _run(tmp_path, "b")  # appended after the torn line
    with open(path, "ab") as fh:
        fh.write(b'\n{"version": 1, "run_id": "c", "rank": "0"}\n\x00\x00\n[1, 2]\n')
    seen = _listed_from_directories(monkeypatch)
    assert _digest_writers(tmp_path) == {"a": [(0, 0)], "b": [(0, 0)]}
    assert seen == ["a"]  # from its digest: its line is gone


def test_a_line_whose_run_is_gone_is_ignored_and_a_missing_index_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    shutil.rmtree(tmp_path / "a")
    seen = _listed_from_directories(monkeypatch)
    assert _digest_writers(tmp_path) == {"b": [(0, 0)]} and seen == []
    shutil.rmtree(tmp_path / index.INDEX_DIR)
    assert _digest_writers(tmp_path) == {"b": [(0, 0)]} and seen == ["b"]


def test_a_fifo_named_like_the_index_is_not_opened(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    path = index_path(tmp_path)
    path.unlink()
    os.mkfifo(path)  # opening it for reading would block the reader forever
    assert read_index(tmp_path).lines.num_rows == 0
    assert _digest_writers(tmp_path) == {"a": [(0, 0)]}


def test_a_forged_state_never_leads_outside_the_run(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    line = json.loads(index_path(tmp_path).read_text().split("\n")[1])
    for key in ("digests", "digests/../../etc", "/etc", "tensors/x", "digests/a\x00b"):
        forged = {**line, "state": {**line["state"], "dirs": {**line["state"]["dirs"], key: 1}}}
        append_line(tmp_path, forged)
    assert len(_states(tmp_path, "a")) == 1  # the forged states are not kept


_APPENDER = """
import sys
from pathlib import Path
from store.index import append_line
root, who = Path(sys.argv[1]), sys.argv[2]
for i in range(40):
    append_line(root, {"run_id": who, "i": i, "pad": "x" * 9000})
"""


def test_concurrent_writers_lines_are_all_present(tmp_path: Path) -> None:
    """Lines over PIPE_BUF (4 kB) from four processes at once: none interleaves."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(tmp_path), f"w{k}"])
        for k in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = [json.loads(x) for x in index_path(tmp_path).read_bytes().split(b"\n") if x]
    assert sorted((x["run_id"], x["i"]) for x in lines) == sorted(
        (f"w{k}", i) for k in range(4) for i in range(40)
    )


def test_a_resumed_run_is_not_listed_from_the_index(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    writer = Writer(tmp_path, "a", attempt=1, **QUIET)
    out = Output(writer, step=3)
    out.put(Stream.SCALARS, {"name": ["loss"], "split": ["train"], "value": [0.1]})
    out.seal(tmp_path / "a", compact=True)
    [state] = _states(tmp_path, "a")  # attempt 0's: attempt 1 records none
    assert list(state["writers"]) == ["0-0"]  # (its views need the rows)
    runs = list_store(tmp_path, trust_digests=True).runs
    assert runs[0].digests == [] and len(runs[0].segments[Stream.SCALARS]) == 2


def test_record_writer_says_whether_it_recorded_the_run_state(tmp_path: Path) -> None:
    _run(tmp_path, "a", seal=False).close()  # segments, no digest
    with pytest.raises(FileNotFoundError):
        record_writer(tmp_path / "a", 0, 0)
    rows = Rows(
        Stream.SCALARS,
        step=1,
        epoch=None,
        wall_time=1.0,
        columns={"name": ["x"], "split": [None], "value": [1.0]},
    )
    table = build_table(Stream.SCALARS, [rows], run_id="b", rank=0, attempt=0, first_seq=0)
    write_segment(table, stream_dir(tmp_path, "b", Stream.SCALARS), "0-0-000000.parquet")
    stale = {"version": 1, "run_id": "b", "rank": 0, "attempt": 0, "segments": {}}
    stale |= {"first_us": None, "last_us": None, "max_step": None, "lifecycle": [], "metrics": []}
    (tmp_path / "b" / "digests").mkdir()
    digest_path(tmp_path / "b", 0, 0).write_text(json.dumps(stale))  # lists no segment
    assert record_writer(tmp_path / "b", 0, 0) is False  # appended, without a state
    assert _bodies(tmp_path, "b") and _states(tmp_path, "b") == []


# -- the snapshot: the index's lines as parsed, so a listing parses only new lines --------


def _parsed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of index bytes each ``read_index`` parses (its JSON lines)."""
    parsed: list[int] = []
    real = index._parse_lines

    def counting(data: bytes) -> Any:
        parsed.append(len(data))
        return real(data)

    monkeypatch.setattr(index, "_parse_lines", counting)
    return parsed


def _snapshot(root: Path) -> Path:
    return root / index.INDEX_DIR / index.SNAPSHOT_FILE


def test_the_snapshot_holds_the_parsed_lines_and_only_appended_ones_are_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    parsed = _parsed_bytes(monkeypatch)
    first = read_index(tmp_path).lines
    assert parsed == [index_path(tmp_path).stat().st_size] and _snapshot(tmp_path).is_file()
    assert read_index(tmp_path).lines.equals(first) and len(parsed) == 1  # index not parsed
    size = index_path(tmp_path).stat().st_size
    _run(tmp_path, "c")
    both = read_index(tmp_path).lines
    assert parsed[1:] == [index_path(tmp_path).stat().st_size - size]  # c's line only
    _snapshot(tmp_path).unlink()
    assert both.equals(read_index(tmp_path).lines)  # the same as parsing it all
    assert both["run_id"].to_pylist() == ["a", "b", "c"]
    assert _digest_writers(tmp_path) == {"a": [(0, 0)], "b": [(0, 0)], "c": [(0, 0)]}


def test_an_index_replaced_under_its_snapshot_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    read_index(tmp_path)  # the snapshot of a's and b's lines
    path = index_path(tmp_path)
    a_line, b_line = (x for x in path.read_bytes().split(b"\n") if x)
    path.write_bytes(b"\n" + b_line + b"\n" + b"\n" + a_line + b"\n" + b" " * 50)  # longer
    parsed = _parsed_bytes(monkeypatch)
    assert read_index(tmp_path).lines["run_id"].to_pylist() == ["b", "a"]
    assert len(parsed) == 1 and parsed[0] > len(a_line) + len(b_line)  # all of it


def test_a_line_being_appended_is_left_for_the_next_reader(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    whole = index_path(tmp_path).read_bytes()
    path = index_path(tmp_path)
    path.write_bytes(whole[:-20])  # the line's end not written yet
    assert read_index(tmp_path).lines.num_rows == 0
    path.write_bytes(whole)  # now it is
    assert read_index(tmp_path).lines["run_id"].to_pylist() == ["a"]


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "other schema", "forged key", "forged time", "forged hash"],
)
def test_a_damaged_or_forged_snapshot_costs_only_speed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    import pyarrow as pa

    _run(tmp_path, "a")
    _run(tmp_path, "b")
    expected = read_index(tmp_path).lines
    snap = _snapshot(tmp_path)
    data = snap.read_bytes()
    with pa.ipc.open_file(pa.py_buffer(data)) as reader:
        schema, lines = reader.schema, reader.read_all()
    meta = json.loads(schema.metadata[b"telemetry.index"])

    def rewrite(table: pa.Table, meta: dict[str, Any]) -> None:
        with pa.OSFile(str(snap), "wb") as sink:
            s = table.schema.with_metadata({b"telemetry.index": json.dumps(meta).encode()})
            with pa.ipc.new_file(sink, s) as w:
                w.write_table(table.cast(s))

    if damage == "garbage":
        snap.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        snap.write_bytes(data[: len(data) // 2])
    elif damage == "other schema":
        rewrite(lines.drop_columns(["valid"]), meta)
    elif damage == "forged key":  # a state that would stat outside the run
        dirs = lines["state_dirs"].to_pylist()
        dirs[0] = [*dirs[0], {"key": "digests/..", "mtime_ns": 1}]
        column = pa.array(dirs, lines.schema.field("state_dirs").type)
        rewrite(
            lines.set_column(lines.schema.get_field_index("state_dirs"), "state_dirs", column), meta
        )
    elif damage == "forged time":  # a wall time no timestamp holds
        column = pa.array([2**62, 0], pa.int64())
        rewrite(
            lines.set_column(lines.schema.get_field_index("first_us"), "first_us", column), meta
        )
    else:  # lines that are not the index's: the hash of the covered bytes differs
        rewrite(lines.take([1, 0]), {**meta, "mtime_ns": 0, "hash": "0" * 40})
    parsed = _parsed_bytes(monkeypatch)
    assert read_index(tmp_path).lines.equals(expected)
    assert parsed == [index_path(tmp_path).stat().st_size]  # parsed again, in full
    assert read_index(tmp_path).lines.equals(expected) and len(parsed) == 1  # rewritten


def test_a_store_that_cannot_take_a_snapshot_is_still_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "a")

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(13, "read-only", str(dst))

    monkeypatch.setattr(index.os, "replace", refuse)
    assert _digest_writers(tmp_path) == {"a": [(0, 0)]}
    assert not _snapshot(tmp_path).exists()
    assert [p.name for p in (tmp_path / index.INDEX_DIR).iterdir()] == [index.INDEX_FILE]
