"""Ground-truth measurements on a model, taken by the test itself (never from the store).

Each probe runs the model on data with plain forward hooks and reports what a rule
claims to see: the share of ReLU units that never fire, of tanh outputs pinned at a
bound, the output std of each weight layer, and each layer's gradient norm.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def _outputs(
    model: nn.Module, wanted: Callable[[nn.Module], bool]
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of every module ``wanted`` selects during the ``with`` block."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _args, out, name=name: seen.__setitem__(name, out.detach())
        )
        for name, module in model.named_modules()
        if wanted(module)
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: nn.Module, x: torch.Tensor) -> None:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(x)
    model.train(was_training)


def dead_relu_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per ReLU module: the share of its units (channels or features) that are <= 0 for
    every example of ``x``."""
    with _outputs(model, lambda m: isinstance(m, nn.ReLU)) as seen:
        _forward(model, x)
    out = {}
    for name, y in seen.items():
        units = y.transpose(0, 1).reshape(y.shape[1], -1)  # unit x (examples, positions)
        out[name] = float((units <= 0).all(dim=1).float().mean())
    return out


def saturated_fractions(
    model: nn.Module, x: torch.Tensor, *, tol: float = 1e-3
) -> dict[str, float]:
    """Per Tanh module: the share of its outputs within ``tol`` of -1 or +1."""
    with _outputs(model, lambda m: isinstance(m, nn.Tanh)) as seen:
        _forward(model, x)
    return {name: float((y.abs() >= 1 - tol).float().mean()) for name, y in seen.items()}


def layer_output_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    """The output std of every Linear/Conv2d, in forward order."""
    with _outputs(model, lambda m: isinstance(m, nn.Linear | nn.Conv2d)) as seen:
        _forward(model, x)
    return [float(y.std()) for y in seen.values()]


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The weight-gradient norm of every Linear/Conv2d (forward order), from one backward
    pass of the cross-entropy on (x, y); the model's gradients are left as they were."""
    saved = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    norms = [float(m.weight.grad.norm()) if m.weight.grad is not None else 0.0 for m in layers]
    for p, g in zip(model.parameters(), saved, strict=True):
        p.grad = g
    return norms


def median(values: list[float]) -> float:
    return statistics.median(values)
