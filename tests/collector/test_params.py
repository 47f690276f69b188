"""ParamWatcher: the kept weight buffer survives a model moved to another dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from collector.params import ParamWatcher, select_parameters


def _step(model: nn.Module, opt: torch.optim.Optimizer, watcher: ParamWatcher, step: int) -> dict:
    dtype = next(model.parameters()).dtype
    opt.zero_grad()
    model(torch.ones(2, 3, dtype=dtype)).sum().backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    watcher.on_before_optimizer_step(step)
    opt.step()
    columns = watcher.on_after_optimizer_step()
    assert columns is not None
    updates = {
        name: norm
        for name, kind, norm in zip(columns["param"], columns["kind"], columns["norm"], strict=True)
        if kind == "update"
    }
    for name, p in model.named_parameters():
        expected = float(torch.linalg.vector_norm((p.detach() - before[name]).double()))
        assert updates[name] == pytest.approx(expected, rel=1e-5)
    return updates


def test_updates_stay_exact_when_the_model_changes_dtype_between_sampled_steps() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = ParamWatcher(select_parameters(model, opt), every=1)
    _step(model, opt, watcher, 1)
    _step(model, opt, watcher, 2)  # the buffer is reused
    model.double()
    _step(model, opt, watcher, 3)  # and re-allocated for float64 weights
    assert all(b.dtype == torch.float64 for b in watcher._buffer)
