"""The disk fills up, the run directory turns read-only, or it is deleted, while training.

Training runs to its last step either way; the collector logs exactly one warning,
counts what it could not write, and once the store is writable again records the
count in a ``dropped`` event; the steps logged outside the fault are all on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import analysis

from .conftest import Worker, report

STEPS, BREAK_AT, REPAIR_AT = 60, 20, 40
CASES = [
    # (fault, repaired at step REPAIR_AT?)
    ("disk_full", True),  # RLIMIT_FSIZE = 0: every write fails with EFBIG
    ("disk_full", False),
    ("read_only", True),  # chmod 555 on the run's directories (as nobody when root)
    ("vanish", False),  # the run directory is deleted
]
RESULTS: list[str] = []


@pytest.mark.parametrize(("kind", "repaired"), CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_training_goes_on_with_one_warning_and_counted_drops(
    spawn: Callable[..., Worker], tmp_path: Path, kind: str, repaired: bool
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    request: dict[str, Any] = {
        "root": str(root),
        "steps": STEPS,
        "fault": {"kind": kind, "at_step": BREAK_AT, "until_step": REPAIR_AT if repaired else None},
        "collector": {"flush_every_s": 0.05},
    }
    if kind == "read_only" and os.geteuid() == 0:
        os.chown(root, 65534, 65534)  # root ignores permission bits: the worker runs as nobody
        request["drop_privileges"] = True
    worker = spawn(**request)
    run_id = worker.expect("started")["run_id"]
    done = worker.expect("done")
    assert worker.wait() == 0

    assert done["steps"] == STEPS  # training was never interrupted
    assert done["rows_dropped"] > 0
    assert len(done["warnings"]) == 1, done["warnings"]
    [warning] = done["warnings"]
    assert "could not write" in warning and run_id in warning

    if kind == "vanish":
        assert not (root / run_id).exists()  # not recreated with half a run in it
        outcome = "run directory stays deleted"
    else:
        with analysis.open_store(root) as store:
            assert store.unreadable == []
            events = store.sql("SELECT kind, payload FROM events ORDER BY seq").to_dicts()
            logged = store.sql("SELECT value FROM scalars WHERE name = 'i' ORDER BY step")
        steps = [int(v) for v in logged["value"]]
        assert steps[:BREAK_AT] == list(range(1, BREAK_AT + 1))  # before the fault: all there
        if repaired:
            assert steps[BREAK_AT:] == list(range(REPAIR_AT + 1, STEPS + 1))  # after: all there
            dropped = [json.loads(e["payload"]) for e in events if e["kind"] == "dropped"]
            assert sum(d["rows"] for d in dropped) == done["rows_dropped"]
            assert events[-1]["kind"] == "run_finished"
            assert json.loads(events[-1]["payload"])["rows_dropped"] == done["rows_dropped"]
            outcome = f"{len(dropped)} dropped event(s) record all {done['rows_dropped']} rows"
        else:
            assert steps == list(range(1, BREAK_AT + 1))
            outcome = "nothing after the fault could be recorded (disk still full at the end)"
    RESULTS.append(
        f"{kind}{' then repaired' if repaired else ''}: {done['steps']}/{STEPS} steps, "
        f"1 warning, {done['rows_dropped']} rows dropped and counted; {outcome}; "
        f"longest step {done['longest_step_s'] * 1000:.1f} ms"
    )
    if len(RESULTS) == len(CASES):
        report("Disk full / read-only / vanished directory", RESULTS)
