"""SIGKILL at random moments of a run's life, and inside flushes and compactions.

After every kill: each published file reads with plain pyarrow, no row is read
twice, the steps on disk are a gap-free prefix of those logged, at most
``flush_every_s`` (plus the write in flight) of them is lost, and the run reads
``crashed`` (``finished`` when the kill came after its final event).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import analysis

from .conftest import Worker, duplicated_rows, report, temp_files, unreadable_files

FLUSH_S = 0.25
SLACK_S = 0.35  # the write in flight, and a loaded 2-core machine's scheduling
RANDOM_TRIALS = 20
PHASES = [  # (operation, during, nth): where the injected hang (and so the kill) lands
    ("write", "flush", 3),  # half a temporary segment on disk
    ("rename", "flush", 3),  # a whole, fsynced temporary segment, not yet published
    ("write", "compaction", 1),  # half a merged file
    ("rename", "compaction", 1),  # the merged file complete, not yet published
    ("unlink", "compaction", 2),  # merged file published, one original deleted
]


@dataclass
class Trial:
    name: str
    kind: str
    worker: Worker
    killed_at: float
    run_id: str | None = None
    status: str | None = None
    loss_s: float = 0.0


def _trial(spawn: Callable[..., Worker], root: Path, name: str, kind: str, **request: Any) -> Trial:
    worker = spawn(root=str(root), name=name, collector={"flush_every_s": FLUSH_S}, **request)
    worker.expect("phase", 60)
    killed_at = worker.kill(signal.SIGKILL)
    worker.wait()
    started = worker.event("started")
    return Trial(name, kind, worker, killed_at, started["run_id"] if started else None)


def test_sigkill_anywhere_leaves_a_readable_store_that_lost_at_most_one_flush_interval(
    spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    rng = random.Random(20)
    trials: list[Trial] = []
    for k in range(RANDOM_TRIALS):
        if k < 4:  # start-up: the Collector being built, the first write
            delay, steps = rng.uniform(0.0, 0.02), None
        elif k < 16:  # training, flushes on the timer
            delay, steps = rng.uniform(0.12, 1.5), None
        else:  # a short run: training, close, compaction, or already gone
            delay, steps = rng.uniform(0.15, 0.9), 150
        worker = spawn(
            root=str(root), name=f"random{k}", steps=steps, collector={"flush_every_s": FLUSH_S}
        )
        time.sleep(delay)  # not a wait for anything: the random moment
        killed_at = worker.kill(signal.SIGKILL)
        worker.wait()
        started = worker.event("started")
        trials.append(
            Trial(f"random{k}", "random", worker, killed_at, started and started["run_id"])
        )
    for at, during, nth in PHASES:
        request: dict[str, Any] = {"inject": {"at": at, "during": during, "nth": nth}}
        if during == "compaction":
            request["steps"] = 200  # then close(): final events, then compaction
        trials.append(_trial(spawn, root, f"{at}-{during}", f"{at} during {during}", **request))

    assert unreadable_files(root) == []
    store = analysis.open_store(root, stale_after_s=0.01)
    try:
        assert duplicated_rows(store) == {}
        unreadable = {u.path.name for u in store.unreadable}
        runs = {r["run_id"]: r for r in store.sql("SELECT * FROM runs").to_dicts()}
        for trial in trials:
            _check_trial(store, runs, unreadable, trial, root)
    finally:
        store.close()

    random_trials = [t for t in trials if t.kind == "random"]
    moments: dict[str, int] = {}
    for t in random_trials:
        moment = _moment(t)
        moments[moment] = moments.get(moment, 0) + 1
    phase_trials = [t for t in trials if t.kind != "random"]
    by_status: dict[str | None, int] = {}
    for t in trials:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    losses = [t.loss_s for t in trials if t.status == "crashed"]
    report(
        "SIGKILL",
        [
            f"{len(trials)} trials ({len(random_trials)} at random moments, "
            f"{len(phase_trials)} inside a flush or a compaction); flush_every_s={FLUSH_S}",
            "unreadable published files: 0; rows read twice: 0; gaps in logged steps: 0",
            f"random kills landed: {moments}",
            f"status after the kill: {by_status} (None: killed before the run existed)",
            f"max data loss: {max(losses):.3f} s (median {sorted(losses)[len(losses) // 2]:.3f} s)",
            *(f"{t.kind}: status {t.status}, loss {t.loss_s:.3f} s" for t in phase_trials),
            f"hidden temporary files left (never read): {len(temp_files(root))}",
        ],
    )


def _moment(trial: Trial) -> str:
    if trial.worker.event("started") is None:
        return "inside Collector()"
    if trial.worker.event("done") is not None:
        return "after the run ended"
    return "inside close()" if trial.status == "finished" else "during training"


def _check_trial(
    store: analysis.Store,
    runs: dict[str, dict[str, Any]],
    unreadable: set[str],
    trial: Trial,
    root: Path,
) -> None:
    dirs = [p for p in root.iterdir() if p.name.startswith(f"{trial.name}-")]
    if trial.run_id is None:  # killed inside Collector(...): no run, or an empty one
        assert len(dirs) <= 1
        assert trial.run_id not in runs
        if dirs and dirs[0].name not in runs:
            assert dirs[0].name in unreadable  # named as an empty run directory
        trial.run_id = dirs[0].name if dirs else None
        trial.status = runs[dirs[0].name]["status"] if dirs and dirs[0].name in runs else None
        return
    assert trial.run_id in runs, trial
    steps = store.sql(
        "SELECT value, (SELECT value FROM scalars t WHERE t.run_id = s.run_id AND "
        "t.step = s.step AND t.name = 't') AS t FROM scalars s "
        "WHERE run_id = $r AND name = 'i' ORDER BY value",
        {"r": trial.run_id},
    )
    logged = [int(v) for v in steps["value"]]
    assert logged == list(range(1, len(logged) + 1)), f"{trial.name}: gaps or repeats"
    trial.status = runs[trial.run_id]["status"]
    if trial.kind.endswith("during compaction"):
        assert trial.status == "finished", trial  # compaction comes after run_finished
    if trial.status == "finished":  # killed after its final event: nothing may be lost
        done = trial.worker.event("done")
        assert len(logged) == (done["steps"] if done else 200 if trial.kind != "random" else 150)
        return
    assert trial.status == "crashed", trial
    if logged:
        last = max(steps["t"])
    else:
        started = trial.worker.event("started")
        assert started is not None
        last = started["t"]
    trial.loss_s = trial.killed_at - last
    assert trial.loss_s <= FLUSH_S + SLACK_S, f"{trial.name}: lost {trial.loss_s:.3f} s"
