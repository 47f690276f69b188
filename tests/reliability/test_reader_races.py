"""A reader racing a compaction: files listed by the reader are removed before it reads
them. The run is listed again; every row is read exactly once and nothing is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import analysis
from analysis import store
from store import scan
from store.compaction import compact_run
from store.records import Rows
from store.schema import Stream
from store.writer import Writer

QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}


def _run(root: Path, run_id: str, segments: int = 4) -> int:
    """A closed, uncompacted run with ``segments`` scalars and events segments; its rows."""
    writer = Writer(root, run_id, **QUIET)
    for k in range(segments):
        columns = {"name": ["loss", "acc"], "split": ["train"] * 2, "value": [k, -k]}
        writer.put(Rows(Stream.SCALARS, step=k, epoch=None, wall_time=1e9 + k, columns=columns))
        payload = {"kind": ["note"], "payload": [json.dumps({"k": k})]}
        writer.put(Rows(Stream.EVENTS, step=k, epoch=None, wall_time=1e9 + k, columns=payload))
        assert writer.flush()
    writer.close()
    return 2 * segments


def _counts(s: analysis.Store) -> tuple[int, int]:
    return s.sql("SELECT count(*) AS n, count(DISTINCT (run_id, seq)) AS d FROM raw_scalars").row(0)


def test_a_compaction_between_listing_and_loading_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _run(tmp_path, "racing")
    _run(tmp_path, "bystander")
    real = store.list_store
    relisted: list[Path] = []

    def list_then_compact(root: Path, **kwargs: Any) -> Any:
        listing = real(root, **kwargs)
        compact_run(root / "racing")  # merged files published, the listed ones deleted
        return listing

    real_list_run = store.list_run

    def counting_list_run(run_dir: Path, **kwargs: Any) -> scan.RunListing:
        relisted.append(run_dir)
        return real_list_run(run_dir, **kwargs)

    monkeypatch.setattr(store, "list_store", list_then_compact)
    monkeypatch.setattr(store, "list_run", counting_list_run)
    with analysis.open_store(tmp_path) as s:
        assert s.unreadable == []
        assert _counts(s) == (2 * rows, 2 * rows)  # both runs, each row once
    assert relisted == [tmp_path / "racing"]  # only the run that changed


def test_a_compaction_between_listing_a_directory_and_reading_a_footer_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _run(tmp_path, "racing")
    real = scan.check_segment
    compacted: list[bool] = []

    def check_then_compact(path: Path, stream: Stream, **kwargs: Any) -> str | None:
        if not compacted:
            compacted.append(True)
            compact_run(tmp_path / "racing")
        return real(path, stream, **kwargs)

    monkeypatch.setattr(scan, "check_segment", check_then_compact)
    with analysis.open_store(tmp_path) as s:
        assert s.unreadable == []
        assert _counts(s) == (rows, rows)


def test_files_deleted_under_the_reader_are_gone_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "doomed")
    real = store.list_store

    def list_then_delete(root: Path, **kwargs: Any) -> Any:
        listing = real(root, **kwargs)
        for path in (root / "doomed" / "scalars").iterdir():
            path.unlink()
        return listing

    monkeypatch.setattr(store, "list_store", list_then_delete)
    with analysis.open_store(tmp_path) as s:
        assert s.unreadable == []
        assert _counts(s) == (0, 0)
        assert s.sql("SELECT count(*) AS n FROM raw_events")["n"][0] == 4


def test_files_that_vanish_from_every_listing_are_named_after_a_few_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, "haunted")
    stale = scan.list_run(tmp_path / "haunted")
    for path in (tmp_path / "haunted" / "scalars").iterdir():
        path.unlink()
    tries: list[Path] = []

    def stale_listing(run_dir: Path, **kwargs: Any) -> scan.RunListing:
        tries.append(run_dir)
        return stale  # as if a compaction raced every listing

    monkeypatch.setattr(store, "list_store", lambda root, **kwargs: scan.StoreListing([stale], []))
    monkeypatch.setattr(store, "list_run", stale_listing)
    with analysis.open_store(tmp_path) as s:
        assert len(tries) == scan.RESCANS
        assert {u.reason for u in s.unreadable} == {scan.REMOVED}
        assert len(s.unreadable) == 4
        assert s.sql("SELECT count(*) AS n FROM raw_events")["n"][0] == 4
