"""Distributed data parallel (DDP) on 2 CPU processes (gloo): one run, each rank its own
segments, scalars/system/activations from both ranks, parameter statistics from rank 0
only (after the all-reduce every rank holds the same gradients)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import analysis
from store.layout import parse_segment_name

from .conftest import Worker, report
from .test_concurrency import _free_port

STEPS = 12


def _ranks_of(directory: Path) -> set[int]:
    names = (parse_segment_name(p.name) for p in directory.glob("*.parquet"))
    return {n.rank for n in names if n is not None}


def test_ddp_ranks_share_one_run_and_only_rank_zero_records_parameters(
    spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    port = _free_port()
    ranks = [
        spawn(
            root=str(root),
            name="ddp",
            steps=STEPS,
            ddp=True,
            collector={"stats_every": 1, "activations_every": 4},
            distributed={"rank": r, "world_size": 2, "port": port},
        )
        for r in (0, 1)
    ]
    assert [w.wait() for w in ranks] == [0, 0]
    started = [w.event("started") for w in ranks]
    assert started[0] is not None and started[1] is not None
    run_id = started[0]["run_id"]
    assert started[1]["run_id"] == run_id and [s["rank"] for s in started] == [0, 1]
    assert [p.name for p in root.iterdir() if p.name != ".index"] == [run_id]  # one run dir

    run_dir = root / run_id
    for stream in ("events", "scalars", "system", "activations"):
        assert _ranks_of(run_dir / stream) == {0, 1}, stream
    assert _ranks_of(run_dir / "tensors") == {0}

    with analysis.open_store(root) as store:
        runs = store.sql("SELECT status, steps FROM runs").to_dicts()
        per_rank = store.sql(
            "SELECT rank, count(*) FILTER (WHERE name = 'i') AS logged FROM scalars "
            "GROUP BY rank ORDER BY rank"
        ).to_dicts()
        tensors = store.sql(
            "SELECT rank, count(DISTINCT step) AS steps, count(DISTINCT param) AS params "
            "FROM tensors GROUP BY rank"
        ).to_dicts()
        timed = store.sql("SELECT count(DISTINCT rank) AS n FROM system")["n"][0]
        rule = [r for r in analysis.load_rules() if r.id == "rank_imbalance"]
        diagnosis = analysis.diagnose(store, rules=rule)
    assert runs == [{"status": "finished", "steps": STEPS}]
    assert per_rank == [{"rank": 0, "logged": STEPS}, {"rank": 1, "logged": STEPS}]
    assert tensors == [{"rank": 0, "steps": STEPS, "params": 4}]  # 2 Linear: weight + bias
    assert timed == 2
    assert diagnosis.not_evaluated == []  # both ranks timed: the straggler rule runs
    report(
        "DDP (2 ranks, gloo, CPU)",
        [
            f"one run {run_id}; {STEPS} steps per rank; scalars, system, activations and "
            "events from ranks 0 and 1; tensors (4 params x 3 kinds per step) from rank 0 only",
            f"rank_imbalance findings on this balanced run: {len(diagnosis.findings)}",
        ],
    )
