"""Issue 16: what the collector records about every step's gradients and about how the
model ran: the norm before clipping and at the step, gradients left over from the
previous step, accumulation, the batch size, evaluation in training mode, and the
module outputs a functional ReLU reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from collector import Collector
from collector.gradients import StepGradients, host_values
from store.schema import Stream

from .read_back import read_stream


def rows(run_dir: Path, stream: Stream) -> list[dict[str, Any]]:
    return sorted(read_stream(run_dir, stream).to_pylist(), key=lambda r: r["seq"])


def events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r["payload"]) for r in rows(run_dir, Stream.EVENTS) if r["kind"] == kind]


class Net(nn.Module):
    """Functional ReLU after fc1 (no nn.ReLU module), dropout before the head."""

    def __init__(self, dead_bias: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 3)
        if dead_bias:
            with torch.no_grad():
                self.fc1.bias[:12] = dead_bias  # 12 of 16 units never positive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


Loop = Callable[[nn.Module, torch.optim.Optimizer, Collector], None]


def record(tmp_path: Path, loop: Loop, *, model: nn.Module | None = None) -> Path:
    net = model or Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with Collector(tmp_path, model=net, optimizer=opt, stats_every=1, activations_every=1) as tel:
        loop(net, opt, tel)
    return tel.run_dir


def system(run_dir: Path) -> list[dict[str, Any]]:
    return rows(run_dir, Stream.SYSTEM)


def test_the_norm_before_clipping_and_at_the_step_and_the_clip_ratio(tmp_path: Path) -> None:
    x, y = data()
    returned: list[float] = []

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            returned.append(float(nn.utils.clip_grad_norm_(net.parameters(), 0.1)))
            opt.step()

    got = system(record(tmp_path, loop))
    assert [r["grad_norm"] for r in got] == pytest.approx(returned, rel=1e-5)
    assert [r["grad_norm_step"] for r in got] == pytest.approx([0.1] * 4, rel=1e-4)
    assert [r["clip_ratio"] for r in got] == pytest.approx([0.1 / n for n in returned], rel=1e-4)
    assert [r["backwards"] for r in got] == [1] * 4
    assert [r["batch_size"] for r in got] == [32] * 4
    assert all(r["grad_carried_norm"] is None for r in got)  # zero_grad() sets None


def test_an_unclipped_step_has_one_norm_and_no_clip_ratio(tmp_path: Path) -> None:
    x, y = data()

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1e6)  # a threshold never reached
            opt.step()

    for r in system(record(tmp_path, loop)):
        assert r["grad_norm"] == pytest.approx(r["grad_norm_step"], rel=1e-6)
        assert r["grad_norm"] > 0 and r["clip_ratio"] is None


@pytest.mark.parametrize(
    "reset", ["none", "set_to_none", "zeros", "after_forward", "accumulate_then_reset"]
)
def test_gradients_carried_into_a_step_are_measured(tmp_path: Path, reset: str) -> None:
    x, y = data()

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(5):
            if reset == "set_to_none":
                opt.zero_grad()
            elif reset == "zeros":
                opt.zero_grad(set_to_none=False)
            micro = 3 if reset == "accumulate_then_reset" else 1
            for i in range(micro):
                loss = F.cross_entropy(net(x[i::micro]), y[i::micro]) / micro
                if reset == "after_forward":
                    opt.zero_grad()  # forward, reset, backward: a common, correct loop
                loss.backward()
            opt.step()
            if reset == "accumulate_then_reset":
                opt.zero_grad()

    got = system(record(tmp_path, loop))
    carried = [r["grad_carried_norm"] for r in got]
    if reset == "none":  # forgotten: each step starts with the gradients of all before
        assert carried[0] is None and all(c is not None and c > 0 for c in carried[1:])
        # what a step starts with is what the previous one stepped with
        assert carried[1:] == pytest.approx([r["grad_norm_step"] for r in got[:-1]], rel=1e-5)
    elif reset == "zeros":
        assert carried[0] is None and carried[1:] == [0.0] * 4
    else:
        assert carried == [None] * 5
    expected = 3 if reset == "accumulate_then_reset" else 1
    assert [r["backwards"] for r in got] == [expected] * 5
    assert [r["batch_size"] for r in got] == [32] * 5  # micro-batches summed


def test_a_grad_scalers_power_of_two_unscaling_is_not_clipping() -> None:
    step = StepGradients(torch.tensor(2048.0), torch.tensor(2.0), None, 1)
    values = [float(t) for t in step.tensors()]
    got = host_values(step, values)
    assert got["grad_norm"] == 2.0 and got["clip_ratio"] is None
    clipped = StepGradients(torch.tensor(7.6), torch.tensor(1.0), None, 1)
    got = host_values(clipped, [float(t) for t in clipped.tensors()])
    assert got["grad_norm"] == pytest.approx(7.6) and got["clip_ratio"] == pytest.approx(1 / 7.6)


def test_a_backward_inside_the_step_closure_is_the_steps_gradient(tmp_path: Path) -> None:
    x, y = data()
    net = Net()
    opt = torch.optim.LBFGS(net.parameters(), lr=0.1, max_iter=1)
    with Collector(tmp_path, model=net, optimizer=opt) as tel:
        for _ in range(3):

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                return loss

            opt.step(closure)
    got = system(tel.run_dir)
    assert len(got) == 3
    for r in got:
        assert r["grad_norm"] == pytest.approx(r["grad_norm_step"]) and r["clip_ratio"] is None


@pytest.mark.parametrize("evaluation", ["eval", "train_mode", "inference_mode"])
def test_validation_in_training_mode_is_recorded(tmp_path: Path, evaluation: str) -> None:
    x, y = data()

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if evaluation == "eval":
                net.eval()
            context = torch.inference_mode() if evaluation == "inference_mode" else torch.no_grad()
            with context:
                net(x)
            net.train()

    run_dir = record(tmp_path, loop)
    found = events(run_dir, "eval_in_training_mode")
    (end,) = events(run_dir, "run_finished")
    if evaluation == "eval":
        assert found == []
        assert end["inference_forwards"] == {"steps": 4, "training_mode_steps": 0}
    else:
        assert found == [{"modules": ["drop"], "module_types": ["Dropout"], "count": 1, "of": 1}]
        assert end["inference_forwards"] == {"steps": 4, "training_mode_steps": 4}


def test_a_model_without_mode_dependent_modules_records_no_mode_event(tmp_path: Path) -> None:
    x, y = data()
    net = nn.Sequential(nn.Linear(8, 3))

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        with torch.no_grad():
            net(x)

    run_dir = record(tmp_path, loop, model=net)
    assert events(run_dir, "eval_in_training_mode") == []
    assert "inference_forwards" not in events(run_dir, "run_finished")[0]


def test_dead_units_behind_a_functional_relu_are_measured(tmp_path: Path) -> None:
    x, y = data()

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

    run_dir = record(tmp_path, loop, model=Net(dead_bias=-50.0))
    feeds = {r["module"]: r["feeds"] for r in rows(run_dir, Stream.MODULES)}
    assert feeds == {"": None, "fc1": "relu", "drop": None, "fc2": None}
    dead = [r for r in rows(run_dir, Stream.ACTIVATIONS) if r["dead_frac"] is not None]
    assert {r["module"] for r in dead} == {"fc1"}
    assert dead and all(r["dead_frac"] >= 12 / 16 for r in dead)


def test_an_nn_relu_module_is_not_mistaken_for_a_functional_one(tmp_path: Path) -> None:
    x, y = data()
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def loop(net: nn.Module, opt: torch.optim.Optimizer, tel: Collector) -> None:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

    run_dir = record(tmp_path, loop, model=net)
    assert all(r["feeds"] is None for r in rows(run_dir, Stream.MODULES))
    dead = {r["module"] for r in rows(run_dir, Stream.ACTIVATIONS) if r["dead_frac"] is not None}
    assert dead == {"1"}  # the ReLU module, not the Linear before it


def test_a_forward_that_raises_leaves_no_function_mode_behind(tmp_path: Path) -> None:
    class Broken(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            F.relu(self.fc1(x))
            raise RuntimeError("bad batch")

    net = Broken()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Collector(tmp_path, model=net, optimizer=opt):
        with pytest.raises(RuntimeError, match="bad batch"):
            net(data()[0])
        assert not torch.overrides._get_current_function_mode_stack()


def test_a_trainable_parameter_the_optimizer_does_not_hold_is_not_carried(tmp_path: Path) -> None:
    x, y = data()
    net = Net()
    opt = torch.optim.SGD(net.fc1.parameters(), lr=0.1)  # fc2 trains nowhere, keeps its grad
    with Collector(tmp_path, model=net, optimizer=opt) as tel:
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    assert [r["grad_carried_norm"] for r in system(tel.run_dir)] == [None] * 4
