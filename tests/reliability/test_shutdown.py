"""SIGTERM, Ctrl-C, an exception, a plain exit: the run ends with its final event and
everything logged before the end is on disk.

Each worker is a training script that ends the way the case says; ``with_block``
False means a bare ``Collector(...)`` that is never closed by the script.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import analysis

from .conftest import Worker, report

CASES = [
    # (how it ends, with block, exit status, final event, recorded error type)
    ("SIGTERM", True, -signal.SIGTERM, "run_failed", "Terminated"),
    ("SIGTERM", False, -signal.SIGTERM, "run_failed", "Terminated"),
    ("SIGINT", True, -signal.SIGINT, "run_failed", "KeyboardInterrupt"),
    ("SIGINT", False, -signal.SIGINT, "run_failed", "KeyboardInterrupt"),
    ("exception", True, 1, "run_failed", "ValueError"),
    ("exception", False, 1, "run_failed", "ValueError"),
    ("exit", False, 0, "run_finished", None),
]
RESULTS: list[str] = []


@pytest.mark.parametrize(
    ("how", "with_block", "exit_status", "final", "error"),
    CASES,
    ids=[f"{c[0]}-{'with' if c[1] else 'bare'}" for c in CASES],
)
def test_the_run_records_how_it_ended_and_keeps_everything_logged_before(
    spawn: Callable[..., Worker],
    tmp_path: Path,
    how: str,
    with_block: bool,
    exit_status: int,
    final: str,
    error: str | None,
) -> None:
    root = tmp_path / "runs"
    request: dict[str, Any] = {
        "root": str(root),
        "with_block": with_block,
        "close": False,
        "report_every": 25,
        "fast_exit": False,
    }
    if how == "exception":
        request["raise_at_step"] = 40
    elif how == "exit":
        request["steps"] = 40
    worker = spawn(**request)
    run_id = worker.expect("started")["run_id"]
    if how.startswith("SIG"):
        worker.expect("step")  # 25 steps in, then the signal at whatever point it lands
        worker.kill(getattr(signal, how))
    assert worker.wait() == exit_status

    with analysis.open_store(root) as store:
        assert store.unreadable == []
        [run] = store.sql("SELECT status, error FROM runs").to_dicts()
        events = store.sql("SELECT kind, payload FROM events ORDER BY seq").to_dicts()
        logged = [
            int(v)
            for v in store.sql("SELECT value FROM scalars WHERE name = 'i' ORDER BY step")["value"]
        ]
    assert events[-1]["kind"] == final
    payload = json.loads(events[-1]["payload"])
    assert payload.get("type") == error
    assert run["status"] == ("finished" if final == "run_finished" else "failed")
    # Every step logged before the end is on disk (a signal may land between a step and
    # its log() call, so the last step can miss its own `i`).
    assert logged == list(range(1, len(logged) + 1))
    assert payload["steps"] - 1 <= len(logged) <= payload["steps"]
    assert len(logged) >= (40 if how in ("exception", "exit") else 25)
    # Events have 2+ segments (run_started is written at once): compaction merges them,
    # except after SIGTERM, when no time is spent compacting.
    merged = list((root / run_id / "events").glob("*_*.parquet"))
    assert bool(merged) == (how != "SIGTERM")
    RESULTS.append(
        f"{how} ({'with block' if with_block else 'bare Collector'}): exit status "
        f"{exit_status}, {final} {error or ''}, steps {payload['steps']}, on disk {len(logged)}"
    )
    if len(RESULTS) == len(CASES):
        report("SIGTERM / KeyboardInterrupt / exception / exit", RESULTS)
    assert run_id
