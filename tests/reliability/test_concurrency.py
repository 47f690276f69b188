"""Many writers, one store: 8 runs plus the 2 ranks of a distributed run (gloo), while
``telemetry analyze`` reads the store in a loop. No reader error, every row once.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import analysis
from telemetry.cli import main

from .conftest import Worker, duplicated_rows, report

RUNS = 8
READS_WHILE_WRITING = 3
READS_WHILE_CLOSING = 2  # at least, after the writers were told to stop
# Several segments per stream, so compactions (which delete files) run while the reader
# reads; not too many: each read lists and loads every one of them.
FAST = {"flush_every_s": 1.0, "heartbeat_every_s": 0.5}
PACE_S = 0.01  # per step: writers that leave the 2 CPUs to the reader now and then


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_concurrent_writers_and_a_reader_see_every_row_exactly_once(
    spawn: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="analysis.store")
    root = tmp_path / "runs"
    root.mkdir()
    runner = CliRunner()
    assert runner.invoke(main, ["analyze", str(root)]).exit_code == 0  # imports, off the clock
    # Writers train until the reader has read a few times, then close (and compact)
    # while it goes on reading.
    stop = tmp_path / "stop"
    workers = [
        spawn(root=str(root), name=f"job{k}", stop_file=str(stop), pace_s=PACE_S, collector=FAST)
        for k in range(RUNS)
    ]
    port = _free_port()
    ranks = [
        spawn(
            root=str(root),
            name="ddp",
            stop_file=str(stop),
            pace_s=PACE_S,
            collector=FAST,
            distributed={"rank": r, "world_size": 2, "port": port},
        )
        for r in (0, 1)
    ]
    workers += ranks

    reads, failures, skipped = 0, [], set()
    began = time.monotonic()
    while not all(w.exited() for w in workers) or reads < READS_WHILE_WRITING + READS_WHILE_CLOSING:
        result = runner.invoke(main, ["analyze", str(root)])
        reads += 1
        if result.exit_code != 0:
            failures.append(f"exit {result.exit_code}: {result.output}\n{result.exception!r}")
        skipped |= {r.getMessage().split(": ", 1)[1] for r in caplog.records}
        caplog.clear()
        if reads == READS_WHILE_WRITING:
            stop.touch()
    seconds = time.monotonic() - began
    for worker in workers:
        assert worker.wait() == 0
    assert failures == []
    # A run directory seen before its first segment is the only thing a reader may skip.
    # (That no row is read twice mid-compaction is pinned down in test_reader_races.)
    assert all(reason.startswith("an empty run directory") for reason in skipped), skipped

    started = [w.event("started") for w in ranks]
    assert started[0] and started[1]
    assert started[0]["run_id"] == started[1]["run_id"]  # one run, two ranks
    assert {s["rank"] for s in started} == {0, 1}
    with analysis.open_store(root) as store:
        assert store.unreadable == []
        assert duplicated_rows(store) == {}
        per_writer = store.sql(
            "SELECT run_id, rank, count(*) AS n, count(DISTINCT value) AS d, min(value) AS lo, "
            "max(value) AS hi FROM scalars WHERE name = 'i' GROUP BY run_id, rank"
        ).to_dicts()
        rows = store.sql("SELECT count(*) AS n FROM raw_scalars")["n"][0]
        status = set(store.sql("SELECT status FROM runs")["status"])
        nruns = store.sql("SELECT count(*) AS n FROM runs")["n"][0]
    assert nruns == RUNS + 1 and status == {"finished"}
    assert len(per_writer) == RUNS + 2
    trained = {}
    for w in workers:
        started, done = w.event("started"), w.event("done")
        assert started is not None and done is not None and done["rows_dropped"] == 0
        trained[(started["run_id"], started["rank"])] = done["steps"]
    for row in per_writer:
        n = trained[(row["run_id"], row["rank"])]
        assert (row["n"], row["d"], row["lo"], row["hi"]) == (n, n, 1, n), row
    report(
        "Concurrency (8 runs + 2 ranks, a reader in a loop)",
        [
            f"{RUNS} runs + 2 ranks of one run (gloo) into one root, "
            f"flush every {FAST['flush_every_s']} s",
            f"{reads} `telemetry analyze` reads during {seconds:.1f} s (writing, then closing "
            f"and compacting): 0 reader errors; skipped: {sorted(skipped) or 'nothing'}",
            f"at the end: {len(per_writer)} writers, {rows} scalar rows, every row exactly "
            "once, all runs finished",
        ],
    )
