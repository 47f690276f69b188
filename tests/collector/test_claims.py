"""Claims: run directories and attempt numbers, never shared by two writers."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.claims import claim_attempt, claim_run_dir, existing_run_dir, last_recorded_step
from store.errors import ConfigError
from store.records import Rows
from store.schema import Stream
from store.writer import Writer

QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}


def _write(root: Path, run_id: str, *, rank: int, attempt: int, steps: list[int]) -> None:
    writer = Writer(root, run_id, rank=rank, attempt=attempt, **QUIET)
    for step in steps:
        columns = {"name": ["loss"], "split": [None], "value": [1.0]}
        writer.put(Rows(Stream.SCALARS, step=step, epoch=None, wall_time=1e9, columns=columns))
    writer.close()


def test_each_claim_of_a_rank_gets_the_next_attempt_and_ranks_count_apart(
    tmp_path: Path,
) -> None:
    run = tmp_path / claim_run_dir(tmp_path, "r")
    assert [claim_attempt(run, 0) for _ in range(3)] == [0, 1, 2]
    assert claim_attempt(run, 1) == 0
    assert sorted(p.name for p in (run / ".attempts").iterdir()) == ["0-0", "0-1", "0-2", "1-0"]


def test_attempts_already_written_are_skipped_even_without_a_claim(tmp_path: Path) -> None:
    _write(tmp_path, "r", rank=0, attempt=4, steps=[1])  # e.g. written by an older version
    assert claim_attempt(tmp_path / "r", 0) == 5


def test_last_recorded_step_reads_the_footers_of_this_rank_only(tmp_path: Path) -> None:
    _write(tmp_path, "r", rank=0, attempt=0, steps=[1, 2, 9, 3])
    _write(tmp_path, "r", rank=1, attempt=0, steps=[40])
    (tmp_path / "r" / "scalars" / "0-0-000099.parquet").write_bytes(b"torn")
    assert last_recorded_step(tmp_path / "r", 0) == 9
    assert last_recorded_step(tmp_path / "r", 1) == 40
    assert last_recorded_step(tmp_path / "r", 2) == 0


def test_an_unknown_run_names_the_latest_runs(tmp_path: Path) -> None:
    (tmp_path / "older").mkdir()
    with pytest.raises(ConfigError, match="no such run.*older"):
        existing_run_dir(tmp_path, "missing")
