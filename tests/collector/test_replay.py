"""The NaN origin by replay (``collector.replay``): exact, and nothing left behind."""

from __future__ import annotations

import gc
import json
import math
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from collector import Collector
from collector.replay import MAX_REPLAYS
from store.schema import Stream

from .read_back import read_stream


def origins(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    events = read_stream(run_dir, Stream.EVENTS).to_pylist()
    return [
        (r["step"], json.loads(r["payload"])) for r in events if r["kind"] == "nonfinite_origin"
    ]


class BreaksOnBatch(nn.Module):
    """BatchNorm, dropout, and a forward whose own code turns Inf on an input of 1e30."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.explode = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.norm(self.first(x)))
        return self.head(self.explode(h)) * x[:, :1].abs().clamp(min=1.0) ** 2  # 1e30 ** 2: Inf


def batch(bad: bool = False) -> torch.Tensor:
    x = torch.randn(16, 4)
    if bad:
        x[0, 0] = 1e30
    return x


def test_the_replay_names_the_module_and_step_and_leaves_the_model_as_it_was(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = BreaksOnBatch()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the update changes nothing
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        for step in range(1, 5):
            opt.zero_grad()
            model(batch(bad=step == 3)).pow(2).mean().backward()
            rng = torch.get_rng_state()
            buffers = [b.clone() for b in model.buffers()]
            opt.step()  # the pre-step hook replays step 3's forward here
            assert torch.equal(torch.get_rng_state(), rng), "dropout's draws restored"
            after = list(model.buffers())
            assert all(
                torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
                for a, b in zip(buffers, after, strict=True)
            ), "BatchNorm's running statistics restored"
    ((step, origin),) = origins(tel.run_dir)
    assert step == 3
    assert origin["module"] == "(model)"  # its own code multiplies by Inf
    assert origin["own_code"] is True


def test_a_healthy_step_keeps_no_check_hooks_and_no_inputs(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(
        tmp_path, model=model, optimizer=opt, stats_every=0, activations_every=0, samples_every=0
    ):
        x = torch.randn(5, 3)
        kept = weakref.ref(x)
        for _ in range(3):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
        assert all(not m._forward_hooks for m in model), "no check hooks on a healthy run"
        del x
        gc.collect()
        assert kept() is None, "the step's inputs are released when it ends"


def test_every_micro_batch_of_an_accumulated_step_is_replayed(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        opt.zero_grad()
        model(torch.randn(4, 2)).sum().backward()
        model(torch.tensor([[math.nan, 1.0]])).sum().backward()  # the second micro-batch
        opt.step()
    assert [(s, o["module"]) for s, o in origins(tel.run_dir)] == [(1, "(input)")]


class Skips(torch.optim.SGD):
    """An optimizer whose step leaves the weights alone (as GradScaler's skip would)."""

    def step(self, closure: Any = None) -> None:
        return None


def test_replays_stop_after_the_cap_when_no_module_is_to_blame(tmp_path: Path) -> None:
    # The loss makes the NaN (the root of a negative): every output is finite.
    model = nn.Linear(2, 1)
    opt = Skips(model.parameters(), lr=0.1)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        replays = []
        for _ in range(MAX_REPLAYS + 3):
            opt.zero_grad()
            (model(torch.ones(3, 2)) * 0 - 1).sqrt().sum().backward()
            opt.step()
            replays.append(tel._steps._held.replays)  # type: ignore[union-attr]
    assert replays[-1] == MAX_REPLAYS
    assert origins(tel.run_dir) == []


def test_the_guard_names_the_origin_the_replay_found(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        model[1].weight.fill_(math.inf)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tel = Collector(tmp_path, model=model, optimizer=opt, on_nonfinite="stop")
    opt.zero_grad()
    model(torch.ones(3, 2)).sum().backward()
    opt.step()
    assert tel.should_stop
    tel.close()
    events = read_stream(tel.run_dir, Stream.EVENTS).to_pylist()
    (stop,) = [json.loads(r["payload"]) for r in events if r["kind"] == "stop"]
    assert stop["origin"]["module"] == "1" and stop["origin_step"] == 1


@pytest.mark.parametrize("nan_check", [0, 2])
def test_a_strided_or_disabled_check_does_not_replay(tmp_path: Path, nan_check: int) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, nan_check=nan_check) as tel:
        assert tel._steps._held is None


def test_a_loop_that_steps_with_a_closure_gets_the_every_step_check(tmp_path: Path) -> None:
    # optimizer.step(closure) runs the forward after the pre-step hook: nothing to replay
    # there, so the check hooks take over from the second step on.
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.ones(3, 2)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        for step in range(1, 5):
            if step == 3:
                with torch.no_grad():
                    model[1].bias.fill_(math.inf)

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = model(x).sum()
                loss.backward()
                return loss

            opt.step(closure)
        assert tel._steps._held is None
    assert [(s, o["module"]) for s, o in origins(tel.run_dir)] == [(3, "1")]
