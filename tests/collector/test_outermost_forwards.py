"""Issue 18: a loop that calls the model's children instead of the model (a
LightningModule's ``training_step`` calling ``self.net(x)``, a wrapper whose ``encoder``
and ``head`` are called in turn) is recorded like one that calls the model: the
outermost forwards that run are the step's forwards (``collector.hooks``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from collector import Collector
from collector.budget import DENSE_STEPS
from store.schema import Stream

from .read_back import read_stream


def rows(run_dir: Path, stream: Stream) -> list[dict[str, Any]]:
    return sorted(read_stream(run_dir, stream).to_pylist(), key=lambda r: r["seq"])


def events(run_dir: Path, kind: str) -> list[tuple[int, dict[str, Any]]]:
    found = rows(run_dir, Stream.EVENTS)
    return [(r["step"], json.loads(r["payload"])) for r in found if r["kind"] == kind]


def summary(run_dir: Path) -> dict[str, int]:
    return {r["module"]: r["calls"] for r in rows(run_dir, Stream.MODULES)}


class Wrapper(nn.Module):
    """Holds the network and has no forward of its own, like a LightningModule whose
    ``training_step`` calls ``self.net(x)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


class EncoderHead(nn.Module):
    """A forward of its own (validation uses it) that training loops may bypass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def encoder_head_steps(
    model: EncoderHead, opt: torch.optim.Optimizer, steps: int, *, micro: int = 1
) -> None:
    x, y = data()
    for _ in range(steps):
        opt.zero_grad()
        for i in range(micro):
            h = model.encoder(x[i::micro])
            (F.cross_entropy(model.head(h), y[i::micro]) / micro).backward()
        opt.step()


def test_a_loop_calling_a_child_gets_activations_timing_and_the_overhead_budget(
    tmp_path: Path,
) -> None:
    model = Wrapper()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    steps = DENSE_STEPS + 10
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model.net(x), y).backward()
            opt.step()
    activations = rows(tel.run_dir, Stream.ACTIVATIONS)
    assert {r["module"] for r in activations if r["step"] == 1} == {
        "net.0",
        "net.1",
        "net.2",
        "net.3",
    }
    system = rows(tel.run_dir, Stream.SYSTEM)
    timed = [r["step"] for r in system if r["step_time_s"] is not None]
    assert timed == list(range(2, steps + 1)), "every step but the first is timed"
    assert {r["batch_size"] for r in system} == {32}
    sampling = events(tel.run_dir, "sampling")
    assert sampling and sampling[0][0] == DENSE_STEPS, "the budget decides after the dense steps"
    calls = summary(tel.run_dir)
    assert calls["net"] == calls["net.0"] == calls["net.3"] == 1, "called once a step: not shared"
    assert calls[""] == 0  # the wrapper's own forward never ran


def test_encoder_then_head_is_one_pass_of_the_step(tmp_path: Path) -> None:
    model = EncoderHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        encoder_head_steps(model, opt, 3)
    activations = rows(tel.run_dir, Stream.ACTIVATIONS)
    for step in (1, 2, 3):  # the head's leaves too, not only the first module called
        got = [r["module"] for r in activations if r["step"] == step]
        assert got == ["encoder.0", "encoder.1", "head"]
    system = rows(tel.run_dir, Stream.SYSTEM)
    assert [r["batch_size"] for r in system] == [32] * 3, "the head's input is not more examples"
    assert [r["step"] for r in system if r["step_time_s"] is not None] == [2, 3]
    calls = summary(tel.run_dir)
    assert (calls["encoder"], calls["encoder.0"], calls["head"], calls[""]) == (1, 1, 1, 0)
    shapes = {r["module"]: r["input_shape"] for r in rows(tel.run_dir, Stream.MODULES)}
    assert json.loads(shapes["head"]) == [32, 16]


def test_accumulation_over_children_counts_every_micro_batch_and_samples_the_first(
    tmp_path: Path,
) -> None:
    model = EncoderHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        encoder_head_steps(model, opt, 3, micro=4)
    system = rows(tel.run_dir, Stream.SYSTEM)
    assert [r["batch_size"] for r in system] == [32] * 3
    assert [r["backwards"] for r in system] == [4] * 3
    for r in system[1:]:
        assert r["samples_per_s"] == pytest.approx(32 / r["step_time_s"], rel=1e-9)
    activations = rows(tel.run_dir, Stream.ACTIVATIONS)
    per_step = [[r["module"] for r in activations if r["step"] == s] for s in (1, 2, 3)]
    assert per_step == [["encoder.0", "encoder.1", "head"]] * 3, "the first micro-batch only"
    numel = {r["module"]: r["numel"] for r in activations}
    assert numel["head"] == 8 * 3, "of the first micro-batch (32 / 4 examples)"
    calls = summary(tel.run_dir)
    assert (calls["encoder"], calls["head"]) == (1, 1), "one pass, not four"


@pytest.mark.parametrize("reset", ["zeros", "none"])
def test_gradients_carried_into_a_step_are_measured_when_children_are_called(
    tmp_path: Path, reset: str
) -> None:
    model = EncoderHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with Collector(tmp_path, model=model, optimizer=opt):
        for _ in range(4):
            if reset == "zeros":
                opt.zero_grad(set_to_none=False)
            F.cross_entropy(model.head(model.encoder(x)), y).backward()
            opt.step()
    system = rows(next(p for p in tmp_path.iterdir() if p.name != ".index"), Stream.SYSTEM)
    carried = [r["grad_carried_norm"] for r in system]
    if reset == "zeros":  # nothing of this step's backward counted as carried
        assert carried == [None, 0.0, 0.0, 0.0]
    else:  # forgotten: what a step starts with is what the previous one stepped with
        assert carried[0] is None
        expected = [r["grad_norm_step"] for r in system[:-1]]
        assert carried[1:] == pytest.approx(expected, rel=1e-5)


def test_a_forward_of_the_model_before_a_loop_that_calls_its_children(tmp_path: Path) -> None:
    model = EncoderHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, _ = data()
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        model(x)  # a shape check in training mode, then the loop calls encoder and head
        encoder_head_steps(model, opt, 3)
    activations = rows(tel.run_dir, Stream.ACTIVATIONS)
    for step in (1, 2, 3):  # step 1: the model's forward, a pass of its own
        got = [r["module"] for r in activations if r["step"] == step]
        assert got == ["encoder.0", "encoder.1", "head"]
    system = rows(tel.run_dir, Stream.SYSTEM)
    assert [r["step"] for r in system if r["step_time_s"] is not None] == [2, 3]
    assert [r["batch_size"] for r in system] == [32] * 3


def test_validation_through_the_root_after_training_through_children(tmp_path: Path) -> None:
    model = EncoderHead()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, _ = data()
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        for step in range(1, 6):
            if step == 3:
                with torch.no_grad():
                    model(x)  # the root's forward, calling encoder and head: one forward
            encoder_head_steps(model, opt, 1)
    system = rows(tel.run_dir, Stream.SYSTEM)
    assert [r["step"] for r in system if r["step_time_s"] is not None] == [2, 4, 5]
    assert [r["batch_size"] for r in system] == [32] * 5


def test_evaluation_of_a_child_in_training_mode_is_seen(tmp_path: Path) -> None:
    model = Wrapper()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model.net(x), y).backward()
            opt.step()
            with torch.no_grad():  # validation without model.eval(): dropout drops
                model.net(x)
    ((step, found),) = events(tel.run_dir, "eval_in_training_mode")
    assert (step, found["modules"]) == (1, ["net.2"])


def test_a_model_without_an_optimizer_gets_the_summary_of_one_pass(tmp_path: Path) -> None:
    model = Wrapper()
    x, y = data()
    with Collector(tmp_path, model=model) as tel:
        for step in range(1, 4):
            F.cross_entropy(model.net(x), y).backward()
            tel.log({"loss": 1.0}, step=step)
    calls = summary(tel.run_dir)
    assert (calls["net"], calls["net.0"]) == (1, 1)


def forward_hooks(model: nn.Module) -> dict[str, int]:
    return {
        name: len(m._forward_pre_hooks) + len(m._forward_hooks) for name, m in model.named_modules()
    }


def test_after_the_first_step_only_the_outermost_modules_keep_step_hooks(tmp_path: Path) -> None:
    calls_model, children = EncoderHead(), EncoderHead()
    before = forward_hooks(calls_model)
    for model, run in ((calls_model, "model"), (children, "children")):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        tel = Collector(tmp_path, name=run, model=model, optimizer=opt, nan_check=0)
        x, y = data()
        for _ in range(2):
            opt.zero_grad()
            out = model(x) if run == "model" else model.head(model.encoder(x))
            F.cross_entropy(out, y).backward()
            opt.step()
        hooks = forward_hooks(model)
        if run == "model":  # the root's pre-hook and post-hook, as before issue 18
            assert hooks == before | {"": 2}
        else:  # nesting counted on the modules that run outermost, and the root
            assert hooks == before | {"": 2, "encoder": 2, "head": 2}
        tel.close()
        assert forward_hooks(model) == before
