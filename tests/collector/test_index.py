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


def _digest_writers(root: Path) -> dict[str, list[tuple[int, int]]]:
    runs, _ = list_store(root, trust_digests=True)
    return {r.path.name: [(d.rank, d.attempt) for d in r.digests] for r in runs}


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
    runs, _ = list_store(tmp_path, trust_digests=True)
    assert runs[0].digests[0].metrics == [
        {"name": "loss", "split": "train", "min": 1 / 3, "max": 1}
    ]
    assert list_store(tmp_path)[0][0].files()  # a full listing still lists every segment


def test_a_run_changed_after_its_line_is_listed_from_its_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _run(tmp_path, "a")
    _run(tmp_path, "b")
    # A segment published after the close (another process of the run, or a copy):
    segment = next((tmp_path / "a" / "scalars").iterdir())
    shutil.copy(segment, stream_dir(tmp_path, "a", Stream.SCALARS) / "0-0-000099.parquet")
    seen = _listed_from_directories(monkeypatch)
    runs, _ = list_store(tmp_path, trust_digests=True)
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
    runs, _ = list_store(tmp_path, trust_digests=True)
    assert seen == ["a"]
    assert runs[0].digests == [] and runs[0].files()
    assert [u.path for u in runs[0].unreadable] == [path]  # named by the fallback


def test_a_rank_still_writing_keeps_its_run_off_the_index_until_it_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rank1 = _run(tmp_path, "a", rank=1, seal=False)  # its segments, no digest yet
    _run(tmp_path, "a", rank=0)
    [first] = read_index(tmp_path).bodies["a"]
    assert first[:2] == (0, 0) and "a" not in read_index(tmp_path).states
    seen = _listed_from_directories(monkeypatch)
    runs, _ = list_store(tmp_path, trust_digests=True)
    assert seen == ["a"] and runs[0].segments[Stream.SCALARS]  # rank 1's rows are read
    Output(rank1, step=3).seal(tmp_path / "a", compact=True)
    seen.clear()
    assert _digest_writers(tmp_path) == {"a": [(0, 0), (1, 0)]}
    assert seen == []
    [state] = read_index(tmp_path).states["a"]
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
    assert read_index(tmp_path).states == {}
    assert _digest_writers(tmp_path) == {"a": [(0, 0)]}


def test_a_forged_state_never_leads_outside_the_run(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    line = json.loads(index_path(tmp_path).read_text().split("\n")[1])
    for key in ("digests", "digests/../../etc", "/etc", "tensors/x", "digests/a\x00b"):
        forged = {**line, "state": {**line["state"], "dirs": {**line["state"]["dirs"], key: 1}}}
        append_line(tmp_path, forged)
    assert len(read_index(tmp_path).states["a"]) == 1  # the forged states are not kept


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
    [state] = read_index(tmp_path).states["a"]  # attempt 0's: attempt 1 records none
    assert list(state["writers"]) == ["0-0"]  # (its views need the rows)
    runs, _ = list_store(tmp_path, trust_digests=True)
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
    assert "b" in read_index(tmp_path).bodies and "b" not in read_index(tmp_path).states
