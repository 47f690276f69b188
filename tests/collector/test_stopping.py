"""While it trains: the NaN guard, early stopping in the loop, and crash status at once."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis import open_store
from collector import Collector, ConfigError, NonFiniteError
from store import liveness

NAN_STEP = 7


def _model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> torch.Tensor:
    x = torch.randn(8, 4)
    if step == NAN_STEP:
        x[0, 0] = math.nan  # a bad batch: loss and gradients turn NaN at this step
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _events(root: Path, kind: str) -> list[tuple[int, dict]]:
    with open_store(root) as store:
        rows = store.sql(f"SELECT step, payload FROM events WHERE kind = '{kind}' ORDER BY seq")
    return [(s, json.loads(p)) for s, p in rows.rows()]


def test_stop_ends_the_loop_within_the_step_that_went_nan(tmp_path: Path) -> None:
    model, opt = _model()
    steps_run = 0
    with Collector(tmp_path, model=model, optimizer=opt, on_nonfinite="stop") as tel:
        for step in range(1, 50):
            loss = _step(model, opt, step)
            tel.log({"loss": loss})
            steps_run = step
            if tel.should_stop:
                break
    assert steps_run == NAN_STEP
    [(step, stop)] = _events(tmp_path, "stop")
    assert step == NAN_STEP
    assert stop["reason"] == "nonfinite" and stop["action"] == "stop"
    assert stop["what"] == "gradient"  # seen in optimizer.step(), before log() saw the loss
    assert stop["origin"]["module"] == "(input)" and stop["origin_step"] == NAN_STEP
    with open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs")["status"].to_list() == ["finished"]


def test_raise_comes_from_the_step_with_every_row_before_it_on_disk(tmp_path: Path) -> None:
    model, opt = _model()
    tel = Collector(tmp_path, model=model, optimizer=opt, on_nonfinite="raise", flush_every_s=600)
    weights = None
    with pytest.raises(NonFiniteError, match=f"step {NAN_STEP}: the gradients' global norm is nan"):
        for step in range(1, 50):
            weights = [p.detach().clone() for p in model.parameters()]
            tel.log({"loss": _step(model, opt, step)})
    # raised in the pre-step hook: the NaN update never happened
    assert weights is not None
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    # on disk before the raise (the writer flushes every 600 s: only the guard's flush)
    with open_store(tmp_path) as store:
        losses = store.sql("SELECT step FROM scalars WHERE name = 'loss' ORDER BY step")
        assert losses["step"].to_list() == list(range(1, NAN_STEP))
        assert store.sql("SELECT count(*) AS n FROM events WHERE kind = 'stop'")["n"][0] == 1
    tel.close(error=sys.exception() or NonFiniteError("x"))
    with open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs")["status"].to_list() == ["failed"]


def test_a_nan_loss_raises_from_log_and_warn_changes_nothing(tmp_path: Path) -> None:
    with Collector(tmp_path / "raise", on_nonfinite="raise") as tel:
        tel.log({"loss": 1.0, "acc": math.nan}, step=1)  # not a loss: no stop
        tel.log({"loss/val": math.inf}, step=2)  # a validation loss: not the guard's
        with pytest.raises(NonFiniteError, match="step 3: the training loss 'loss' is inf"):
            tel.log({"loss": math.inf}, step=3)
        tel.log({"loss": math.nan}, step=4)  # raised once
        assert not tel.should_stop
    with Collector(tmp_path / "warn") as tel:
        tel.log({"loss": math.nan}, step=1)
        assert not tel.should_stop
    assert _events(tmp_path / "warn", "stop") == []
    with pytest.raises(ConfigError, match="on_nonfinite must be one of"):
        Collector(tmp_path / "bad", on_nonfinite="ignore")


def _early_stop_step(values: list[float], patience: int, min_delta: float) -> tuple[int, list[int]]:
    """The evaluation at which patience runs out, and the improving ones (1-based),
    computed here independently of the collector."""
    best, since, bests = math.inf, 0, []
    for i, v in enumerate(values, start=1):
        if v < best - min_delta:
            best, since = v, 0
            bests.append(i)
        else:
            since += 1
            if since == patience:
                return i, bests
    return -1, bests


def test_early_stopping_stops_at_the_patience_computed_here(tmp_path: Path) -> None:
    values = [1.0, 0.8, 0.79, 0.7, 0.71, 0.72, 0.695, 0.69, 0.75, 0.76, 0.77, 0.78, 0.5]
    expected_stop, expected_bests = _early_stop_step(values, patience=4, min_delta=0.01)
    assert expected_stop == 8  # 0.79, 0.695 and 0.69 are not better by more than 0.01
    seen_best, stopped_at = [], None
    with Collector(tmp_path) as tel:
        tel.early_stopping("loss/val", patience=4, min_delta=0.01)
        for epoch, value in enumerate(values, start=1):
            before = tel.is_best
            tel.log({"loss/train": value + 0.1}, step=epoch * 10)
            assert tel.is_best == before  # only the watched metric's next value decides
            tel.log(
                {"loss/val": torch.tensor(value, dtype=torch.float64)}, step=epoch * 10, epoch=epoch
            )
            tel.log({"acc/val": 0.5}, step=epoch * 10)  # logged after: changes nothing
            if tel.is_best:
                seen_best.append(epoch)
            if tel.should_stop:
                stopped_at = epoch
                break
    assert stopped_at == expected_stop and seen_best == expected_bests
    bests = _events(tmp_path, "best")
    assert [s for s, _ in bests] == [10 * e for e in expected_bests]
    assert bests[-1][1] == {"metric": "loss/val", "value": 0.7, "mode": "min"}
    [(step, stop)] = _events(tmp_path, "stop")
    assert step == 10 * expected_stop
    assert stop | {"min_delta": 0.01} == {
        "reason": "early_stopping",
        "metric": "loss/val",
        "mode": "min",
        "patience": 4,
        "min_delta": 0.01,
        "best": 0.7,
        "best_step": 40,
        "evaluations": expected_stop,
    }


def test_early_stopping_max_mode_nan_and_bad_arguments(tmp_path: Path) -> None:
    with Collector(tmp_path) as tel:
        tel.early_stopping("acc", patience=2, mode="max")
        tel.log({"acc": math.nan}, step=1)
        assert not tel.is_best  # a NaN is never the best
        tel.log({"acc": 0.5}, step=2)
        assert tel.is_best
        tel.log({"acc": 0.6}, step=3)
        assert tel.is_best and not tel.should_stop
        tel.log({"acc": 0.6}, step=4)
        tel.log({"acc": math.nan}, step=5)
        assert tel.should_stop and not tel.is_best
        for kwargs, message in (
            ({"patience": 0}, "patience"),
            ({"min_delta": -1}, "min_delta"),
            ({"mode": "up"}, "mode"),
            ({"metric": "loss/"}, "metric"),
        ):
            with pytest.raises(ConfigError, match=message):
                tel.early_stopping(**kwargs)  # type: ignore[arg-type]


CHILD = """
import sys, time, torch
from collector import Collector
m = torch.nn.Linear(2, 1)
o = torch.optim.SGD(m.parameters(), lr=0.1)
tel = Collector(sys.argv[1], model=m, optimizer=o, flush_every_s=0.1, heartbeat_every_s=600)
for i in range(10**9):
    loss = m(torch.ones(1, 2)).sum()
    o.zero_grad()
    loss.backward()
    o.step()
    tel.log({"loss": loss})
    if i == 3:
        tel.flush()
        print("ready", flush=True)
    time.sleep(0.01)
"""


def test_a_killed_run_reads_crashed_at_once_on_its_host(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with open_store(tmp_path) as store:
            assert store.sql("SELECT status FROM runs")["status"].to_list() == ["running"]
            started = json.loads(
                store.sql("SELECT payload FROM events WHERE kind = 'run_started'")["payload"][0]
            )
        assert started["pid"] == child.pid and started["host"] == liveness.this_host()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    killed = time.monotonic()
    # the heartbeat rule alone would wait stale_after_s (60 s by default)
    with open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs")["status"].to_list() == ["crashed"]
    assert time.monotonic() - killed < 2.0
    # pid reuse: a live process with that pid but another start time is not the writer
    identity = started["process"]
    assert identity and liveness.writer_gone(started["host"], os.getpid(), identity)
    assert not liveness.writer_gone(
        started["host"], os.getpid(), liveness.process_identity(os.getpid())
    )
    # another host, or no identity: cannot tell here (the heartbeat decides)
    assert not liveness.writer_gone("elsewhere", child.pid, identity)
    assert not liveness.writer_gone(started["host"], child.pid, None)
