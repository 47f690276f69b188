"""Resume: a run restarted from a checkpoint appends a new attempt to the same run.

Nothing already written is touched; the views keep the latest attempt of every step;
an unknown run id is a clear error.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import analysis
from collector import Collector, ConfigError
from store.layout import parse_segment_name

from .conftest import Worker, report

CHECKPOINT = 20


def _resumed_loop(root: Path, run_id: str, start_step: int | None, steps: int) -> Collector:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 4)
    with Collector(root, resume=run_id, start_step=start_step, model=model, optimizer=opt) as tel:
        for _ in range(steps):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            tel.log({"i": tel.step, "resumed": 1.0})
    return tel


def _published(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if parse_segment_name(p.name) is not None}


def test_a_killed_run_resumed_from_a_checkpoint_appends_an_attempt_and_loses_nothing(
    spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    worker = spawn(root=str(root), name="resumable", report_every=100)
    run_id = worker.expect("started")["run_id"]
    while worker.expect("step")["step"] < 500:
        pass
    # Killed once a scalars segment is published after step 500: its rows go well past the
    # checkpoint. (Waiting for step 500 alone raced the 0.25 s flush on a fast machine.)
    scalars = root / run_id / "scalars"
    seen = _published(scalars)
    while _published(scalars) <= seen:
        worker.expect("step")
    worker.kill(signal.SIGKILL)
    worker.wait()
    with analysis.open_store(root, stale_after_s=0.01) as store:
        before = store.sql("SELECT * FROM raw_scalars WHERE name = 'i' ORDER BY step")
        assert store.sql("SELECT status FROM runs")["status"].to_list() == ["crashed"]
    crashed_at = int(before["value"].max())
    assert crashed_at > CHECKPOINT + 30

    tel = _resumed_loop(root, run_id, CHECKPOINT, 30)  # replays steps 21.. from the checkpoint

    assert (tel.run_id, tel.attempt, tel.step) == (run_id, 1, CHECKPOINT + 30)
    names = [parse_segment_name(p.name) for p in (root / run_id / "scalars").iterdir()]
    assert {n.attempt for n in names if n} == {0, 1}  # the attempt is in the segment names
    with analysis.open_store(root) as store:
        assert store.unreadable == []
        [run] = store.sql("SELECT status, attempts, steps FROM runs").to_dicts()
        view = store.sql(
            "SELECT step, attempt, value FROM scalars WHERE name = 'i' ORDER BY step"
        ).rows()
        raw = store.sql("SELECT step, attempt FROM raw_scalars WHERE name = 'i'").rows()
        started = [
            json.loads(p)
            for p in store.sql(
                "SELECT payload FROM events WHERE kind = 'run_started' ORDER BY attempt"
            )["payload"]
        ]
    assert run == {"status": "finished", "attempts": 2, "steps": CHECKPOINT + 30}
    # The view: one row per step, from the latest attempt that recorded it. Steps the
    # resumed attempt has not reached again still show the first attempt's values.
    assert [s for s, _, _ in view] == list(range(1, crashed_at + 1))
    assert {s for s, a, _ in view if a == 1} == set(range(CHECKPOINT + 1, CHECKPOINT + 31))
    assert {s for s, a, _ in view if a == 0} == set(range(1, crashed_at + 1)) - set(
        range(CHECKPOINT + 1, CHECKPOINT + 31)
    )
    # Nothing lost: the first attempt's replayed steps are still in the raw stream.
    assert {(s, 0) for s in range(1, crashed_at + 1)} <= set(raw)
    assert [(p["attempt"], p["resumed"], p["start_step"]) for p in started] == [
        (0, False, 0),
        (1, True, CHECKPOINT),
    ]
    report(
        "Resume",
        [
            f"killed at step {crashed_at} (status crashed), resumed from the step-{CHECKPOINT} "
            f"checkpoint as attempt 1 for 30 steps: status finished, attempts 2, "
            f"views: steps {CHECKPOINT + 1}..{CHECKPOINT + 30} from attempt 1, the others "
            f"from attempt 0, each step once; raw keeps all {crashed_at} steps of attempt 0; "
            f"runs.steps = {CHECKPOINT + 30} (the latest attempt's)",
        ],
    )


def test_resume_without_start_step_continues_after_the_last_recorded_step(
    tmp_path: Path,
) -> None:
    first = _resumed_loop_fresh(tmp_path, steps=7)
    again = _resumed_loop(tmp_path, first.run_id, None, 3)
    third = _resumed_loop(tmp_path, first.run_id, None, 2)
    assert (again.attempt, again.step) == (1, 10)
    assert (third.attempt, third.step) == (2, 12)
    with analysis.open_store(tmp_path) as store:
        steps = store.sql("SELECT step FROM scalars WHERE name = 'i' ORDER BY step")["step"]
        assert steps.to_list() == list(range(1, 13))


def _resumed_loop_fresh(root: Path, steps: int) -> Collector:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(root, name="first", model=model, optimizer=opt) as tel:
        for _ in range(steps):
            opt.zero_grad()
            model(torch.ones(2, 4)).sum().backward()
            opt.step()
            tel.log({"i": tel.step})
    return tel


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("no-such-run", "no such run"),
        ("../outside", "resume must be the id of a run"),
        ("", "resume must be the id of a run"),
        (3, "resume must be the id of a run"),
    ],
)
def test_resuming_an_unknown_run_is_a_config_error_that_creates_nothing(
    tmp_path: Path, run_id: object, message: str
) -> None:
    (tmp_path / "earlier").mkdir()
    with pytest.raises(ConfigError, match=message):
        Collector(tmp_path, resume=run_id)  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["earlier"]
    assert not (tmp_path.parent / "outside").exists()
