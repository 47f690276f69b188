"""Activation statistics, model summary, feature-map samples and the NaN origin check."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import analysis
from collector import Collector
from collector.activations import INPUT
from collector.samples import quantize
from store.schema import Stream

from .read_back import read_stream


def train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, steps: int = 1) -> None:
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().pow(2).mean().backward()
        opt.step()


def rows(run_dir: Path, stream: Stream) -> list[dict[str, Any]]:
    return read_stream(run_dir, stream).to_pylist()


class Block(nn.Module):
    """A shared linear layer called twice, a tuple output and a dict input."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.act(self.shared(self.shared(x))), None


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y, _ = self.block(x)
        out = self.head(y)
        return out, {"features": y}


def test_model_summary_of_a_nested_model_with_a_shared_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Nested()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        train(model, opt, torch.randn(5, 4))
    summary = {r["module"]: r for r in rows(tel.run_dir, Stream.MODULES)}
    assert list(summary) == [
        "",
        "block",
        "block.shared",
        "block.act",
        "head",
        "head.0",
        "head.1",
        "unused",
    ]
    root = summary[""]
    assert (root["module_type"], root["parent"], root["depth"]) == ("Nested", None, 0)
    assert root["params"] == sum(p.numel() for p in model.parameters()) == 20 + 15 + 12
    assert root["own_params"] == 0 and root["trainable_params"] == root["params"]
    assert json.loads(root["input_shape"]) == [5, 4]
    assert json.loads(root["output_shape"]) == [[5, 3], {"features": [5, 4]}]
    shared = summary["block.shared"]
    assert (shared["calls"], shared["parent"], shared["depth"]) == (2, "block", 2)
    assert json.loads(shared["output_shape"]) == [5, 4]
    assert json.loads(summary["block"]["output_shape"]) == [[5, 4], None]
    unused = summary["unused"]
    assert unused["calls"] == 0 and unused["input_shape"] is None and unused["params"] == 12


def test_summary_waits_for_a_training_forward(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        with torch.no_grad():
            model(torch.randn(7, 4))  # evaluation: not the summary
        train(model, opt, torch.randn(3, 4))
    (first, *_) = rows(tel.run_dir, Stream.MODULES)
    assert json.loads(first["input_shape"]) == [3, 4]


def test_dead_units_are_those_zero_for_every_example(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0, 0.0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.tensor([[1.0, -1.0], [2.0, -3.0]])  # unit 0 fires, 1 never, 2 never, 3 once
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        train(model, opt, x)
    relu = next(r for r in rows(tel.run_dir, Stream.ACTIVATIONS) if r["module"] == "1")
    assert relu["dead_frac"] == 0.5
    assert relu["zero_frac"] == pytest.approx(5 / 8)
    assert relu["module_type"] == "ReLU" and relu["saturated_frac"] is None
    linear = next(r for r in rows(tel.run_dir, Stream.ACTIVATIONS) if r["module"] == "0")
    assert linear["dead_frac"] is None


def test_dead_units_of_a_conv_output_are_channels(tmp_path: Path) -> None:
    conv = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(4, 1, 1, 1))
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.rand(3, 1, 5, 5) + 0.1  # positive: channels 1 and 3 never fire
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        train(model, opt, x)
    relu = next(r for r in rows(tel.run_dir, Stream.ACTIVATIONS) if r["module"] == "1")
    assert relu["dead_frac"] == 0.5


def test_tanh_driven_by_huge_inputs_is_saturated(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Sigmoid())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        train(model, opt, torch.randn(16, 3) * 1e4)
    by_module = {r["module"]: r for r in rows(tel.run_dir, Stream.ACTIVATIONS)}
    assert by_module["1"]["saturated_frac"] > 0.95
    assert by_module["0"]["saturated_frac"] is None
    assert 0.0 <= by_module["3"]["saturated_frac"] <= 1.0
    tanh_out = model[1](model[0](torch.randn(4, 3)))
    assert tanh_out.shape == (4, 8)


def test_activations_are_sampled_every_n_steps_and_not_in_eval(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=2) as tel:
        for _ in range(5):
            train(model, opt, torch.randn(4, 3))
            model.eval()
            with torch.no_grad():
                model(torch.randn(4, 3))
            model.train()
    got = rows(tel.run_dir, Stream.ACTIVATIONS)
    assert sorted({r["step"] for r in got}) == [1, 3, 5]
    assert all(r["numel"] == 12 for r in got)  # the batch of 4 trained on, never eval


def test_stats_match_torch_on_the_recorded_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(9, 5)
    expected = model(x).detach()
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=1) as tel:
        train(model, opt, x)
    (row,) = rows(tel.run_dir, Stream.ACTIVATIONS)
    assert row["module"] == "0" and row["numel"] == 54
    assert row["mean"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert row["std"] == pytest.approx(float(expected.std()), rel=1e-4)
    assert (row["min"], row["max"]) == (float(expected.min()), float(expected.max()))
    assert row["nonfinite"] == 0


class Breaks(nn.Module):
    """Finite until `at`, then `bad` emits Inf."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.good = nn.Linear(3, 3)
        self.bad = nn.Linear(3, 3)
        self.after = nn.Linear(3, 1)
        self.calls = 0
        self.at = at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.good(x)
        if self.calls == self.at:
            with torch.no_grad():
                self.bad.bias.fill_(math.inf)
        return self.after(self.bad(h))


def test_nan_origin_is_the_first_module_at_the_first_step(tmp_path: Path) -> None:
    model = Breaks(at=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        train(model, opt, torch.randn(2, 3), steps=6)
    events = [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]
    assert len(events) == 1  # reported once
    assert events[0]["step"] == 4
    payload = json.loads(events[0]["payload"])
    assert payload == {
        "module": "bad",
        "module_type": "Linear",
        "numel": 6,
        "sum": "Infinity",
    }


def test_large_finite_half_precision_outputs_are_not_reported(tmp_path: Path) -> None:
    # 4096 outputs of 60000 each: finite in float16, but their float16 sum would be Inf.
    model = nn.Sequential(nn.Linear(1, 4096)).half()
    with torch.no_grad():
        model[0].weight.fill_(0.0)
        model[0].bias.fill_(60000.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        train(model, opt, torch.ones(1, 1, dtype=torch.float16), steps=2)
    assert not [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]


def test_nan_in_the_input_is_reported_as_the_input(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        train(model, opt, torch.tensor([[1.0, math.nan]]))
    (event,) = [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]
    assert json.loads(event["payload"])["module"] == INPUT


class LogOfLinear(nn.Module):
    """Functional code inside a module with a child: ``torch.log`` of a linear output."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.linear(x))  # NaN wherever the linear output is negative


class FunctionalNan(nn.Module):
    def __init__(self, *, in_model: bool) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        self.block = nn.Sequential(nn.Linear(3, 3)) if in_model else LogOfLinear()
        self.head = nn.Linear(3, 1)
        self.in_model = in_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.block(self.first(x)))
        return torch.log(-out.abs() - 1) if self.in_model else out  # the model's own code


@pytest.mark.parametrize(
    ("in_model", "origin", "kind"),
    [(False, "block", "LogOfLinear"), (True, "(model)", "FunctionalNan")],
)
def test_a_nan_made_by_a_modules_own_code_is_that_modules_not_the_next_layers(
    tmp_path: Path, in_model: bool, origin: str, kind: str
) -> None:
    torch.manual_seed(0)
    model = FunctionalNan(in_model=in_model)
    with torch.no_grad():  # every input of the log negative somewhere
        for p in model.parameters():
            p.fill_(-0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        train(model, opt, torch.randn(4, 3), steps=2)
    (event,) = [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]
    payload = json.loads(event["payload"])
    assert (event["step"], payload["module"], payload["module_type"]) == (1, origin, kind)
    assert payload["own_code"] is True  # its submodules' outputs were finite
    with analysis.open_store(tmp_path) as store:
        (finding,) = [f for f in analysis.diagnose(store).findings if f.rule == "nonfinite"]
    assert finding.subject == origin
    assert f"made by the forward code of a {kind} itself" in finding.message


def test_a_nan_of_a_child_inside_a_custom_module_is_the_childs(tmp_path: Path) -> None:
    model = Nested()
    with torch.no_grad():
        model.block.shared.bias.fill_(math.inf)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, activations_every=0) as tel:
        train(model, opt, torch.randn(2, 4), steps=1)
    (event,) = [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]
    payload = json.loads(event["payload"])
    assert (payload["module"], payload.get("own_code")) == ("block.shared", None)


def test_nan_check_can_be_turned_off(tmp_path: Path) -> None:
    model = Breaks(at=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, nan_check=False) as tel:
        train(model, opt, torch.randn(2, 3), steps=2)
    assert not [r for r in rows(tel.run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]


def origins(run_dir: Path) -> list[tuple[int, str]]:
    found = [r for r in rows(run_dir, Stream.EVENTS) if r["kind"] == "nonfinite_origin"]
    return [(r["step"], json.loads(r["payload"])["module"]) for r in found]


def test_a_sampled_nan_check_finds_an_origin_on_a_checked_step(tmp_path: Path) -> None:
    model = Breaks(at=4)  # checked steps: 1, 4, 7
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, nan_check=3) as tel:
        train(model, opt, torch.randn(2, 3), steps=8)
    assert origins(tel.run_dir) == [(4, "bad")]


def test_a_sampled_nan_check_reports_late_when_the_origin_falls_between_checks(
    tmp_path: Path,
) -> None:
    # The documented trade-off: Inf appears at step 4, but the next checked step is 5,
    # when the Inf loss has made every weight NaN, so the first layer looks guilty.
    model = Breaks(at=4)  # checked steps: 1, 3, 5
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, nan_check=2) as tel:
        train(model, opt, torch.randn(2, 3), steps=6)
    assert origins(tel.run_dir) == [(5, "good")]


def test_quantize_round_trips_within_one_level() -> None:
    maps = torch.stack([torch.linspace(-3, 5, 16).reshape(4, 4), torch.full((4, 4), 2.0)])
    maps[0, 0, 0] = math.nan
    q, lo, hi = quantize(maps)
    assert q.dtype == torch.uint8 and q.shape == maps.shape
    decoded = lo[:, None, None] + q.float() / 255 * (hi - lo)[:, None, None]
    finite = torch.isfinite(maps)
    assert torch.allclose(decoded[finite], maps[finite], atol=float((hi - lo).max()) / 255)
    assert q[0, 0, 0] == 0 and float(lo[1]) == float(hi[1]) == 2.0


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.Conv2d(20, 4, 3))


def test_feature_maps_and_filters_are_sampled(tmp_path: Path) -> None:
    model = conv_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, model=model, optimizer=opt, samples_every=2) as tel:
        train(model, opt, torch.randn(2, 3, 6, 6), steps=3)
    got = rows(tel.run_dir, Stream.SAMPLES)
    assert sorted({r["step"] for r in got}) == [1, 3]
    step1 = [(r["module"], r["what"], r["shape"]) for r in got if r["step"] == 1]
    assert step1 == [
        ("0", "feature_map", [16, 6, 6]),  # at most 16 of 20 channels
        ("2", "feature_map", [4, 4, 4]),
        ("0", "filter", [16, 3, 3]),  # the first conv's kernels, flattened over channels
    ]
    first = got[0]
    assert len(first["data"]) == 16 * 6 * 6 and first["dtype"] == "uint8"
    assert len(first["lo"]) == len(first["hi"]) == 16


def test_sample_budget_is_respected(tmp_path: Path) -> None:
    model = conv_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    budget = 1500  # one 16x6x6 map (576 B) + one 4x4x4 (64 B) + filters (144 B) per step
    with Collector(
        tmp_path, model=model, optimizer=opt, samples_every=1, samples_budget_bytes=budget
    ) as tel:
        train(model, opt, torch.randn(2, 3, 6, 6), steps=5)
    got = rows(tel.run_dir, Stream.SAMPLES)
    assert sum(len(r["data"]) for r in got) <= budget
    assert {r["step"] for r in got} == {1, 2}
