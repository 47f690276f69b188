"""ParamWatcher: the kept weight buffer survives a model moved to another dtype."""

from __future__ import annotations

from typing import Any

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
    param, kind = (columns[c].to_pylist() for c in ("param", "kind"))  # Arrow, built once
    norm = columns["norm"]
    updates = {n: v for n, k, v in zip(param, kind, norm, strict=True) if k == "update"}
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


def _grad_norms(tmp_path: Any, opt_factory: Any, *, closure: bool) -> tuple[dict, dict]:
    """(recorded grad norms of step 2, the true gradient norms of that step)."""
    from collector import Collector
    from store.schema import Stream
    from tests.collector.read_back import read_stream

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = opt_factory(model.parameters())
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    true: dict[str, float] = {}

    def loss_and_backward() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        for name, p in model.named_parameters():
            true[name] = float(torch.linalg.vector_norm(p.grad.double()))
        return loss

    with Collector(tmp_path, model=model, optimizer=opt, stats_every=1) as tel:
        for _ in range(2):
            if closure:
                opt.step(loss_and_backward)
            else:
                loss_and_backward()
                opt.step()
    rows = read_stream(tel.run_dir, Stream.TENSORS).to_pylist()
    recorded = {r["param"]: r["norm"] for r in rows if r["kind"] == "grad" and r["step"] == 2}
    return recorded, true


def test_gradients_are_read_before_an_optimizer_that_changes_them_in_place(tmp_path: Any) -> None:
    # SGD with Nesterov momentum adds the momentum buffer to .grad during the step.
    nesterov = lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)  # noqa: E731
    recorded, true = _grad_norms(tmp_path, nesterov, closure=False)
    assert recorded == pytest.approx(true, rel=1e-5)


def test_gradients_of_a_closure_are_read_after_the_step(tmp_path: Any) -> None:
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    recorded, true = _grad_norms(tmp_path, sgd, closure=True)
    assert recorded == pytest.approx(true, rel=1e-5)


def _frozen_backbone() -> tuple[nn.Sequential, torch.optim.Optimizer]:
    """A backbone frozen by design whose parameters the optimizer holds anyway."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_frozen_parameters_given_to_the_optimizer_keep_the_models_names() -> None:
    model, opt = _frozen_backbone()
    extra = nn.Parameter(torch.ones(1))  # a learnable temperature outside the model
    opt.add_param_group({"params": [extra]})
    names = [n for n, _ in select_parameters(model, opt)]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "group1.0"]
    # frozen and not in the optimizer: nothing to watch
    head_only = torch.optim.SGD(model[2].parameters(), lr=0.1)
    assert [n for n, _ in select_parameters(model, head_only)] == ["2.weight", "2.bias"]


def test_a_frozen_parameter_is_written_only_while_it_is_trainable() -> None:
    model, opt = _frozen_backbone()
    watcher = ParamWatcher(select_parameters(model, opt), every=1)

    def rows(step: int) -> set[tuple[str, str]]:
        opt.zero_grad()
        model(torch.ones(2, 3)).sum().backward()
        watcher.on_before_optimizer_step(step)
        opt.step()
        columns = watcher.on_after_optimizer_step()
        assert columns is not None
        return set(zip(columns["param"].to_pylist(), columns["kind"].to_pylist(), strict=True))

    head = {(p, k) for p in ("2.weight", "2.bias") for k in ("grad", "weight", "update")}
    assert rows(1) == head
    model[0].requires_grad_(True)  # gradual unfreezing
    assert rows(2) == head | {
        (p, k) for p in ("0.weight", "0.bias") for k in ("grad", "weight", "update")
    }
    model.requires_grad_(False)  # everything frozen: the step is not written
    watcher.on_before_optimizer_step(3)
    assert watcher.on_after_optimizer_step() is None
