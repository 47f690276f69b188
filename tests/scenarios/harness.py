"""One training loop for the scenario suite, instrumented for ground truth.

The models and data are the demo's (``telemetry.demo``: ``SmallCNN``, the sigmoid MLP,
``build``, ``load_digits_tensors``), plus the MLPs and the BatchNorm CNN the suite needs
to cover every model family. ``fit`` trains one run with the collector attached, the way
the README's 15-line example does, and measures on its own (never through the store)
what a scenario's ground truth needs: every step's loss, accuracy, batch-wait and step
time, and every evaluation's loss and accuracy. The knobs a pathology needs (a batch
source, a batch corrupted at some step, a learning-rate schedule, an evaluation cadence)
are arguments, so each scenario is a few lines of configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from collector import Collector
from telemetry.demo import SmallCNN

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]
Perturb = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Statistics on every step and activations every 5th, whatever the collector's default
# strides (an overhead budget picks them from measured timings: not deterministic).
# No feature-map samples: no rule reads them.
COLLECTOR_OPTIONS: dict[str, Any] = {"stats_every": 1, "activations_every": 5, "samples_every": 0}


@dataclass
class Trace:
    """What the training loop measured itself, step by step and evaluation by evaluation."""

    run_id: str
    model: nn.Module
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # global, before each optimizer step
    wait_s: list[float] = field(default_factory=list)  # fetching the batch
    step_s: list[float] = field(default_factory=list)  # fetching it and training on it


def global_grad_norm(model: nn.Module) -> float:
    """The L2 norm of all of ``model``'s gradients together (what clip_grad_norm_ measures)."""
    norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def mlp(
    widths: tuple[int, ...] = (64, 64, 64, 10),
    *,
    batchnorm: bool = False,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Flatten, then Linear (+ BatchNorm1d) + activation per hidden layer, and a Linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers.append(nn.Linear(fan_in, fan_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(fan_out))
        layers.append(activation())
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def he_init(model: nn.Module, *, gain: float = 1.0) -> nn.Module:
    """Kaiming-normal weights (times ``gain``) and zero biases for every Linear/Conv2d."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.weight.mul_(gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def batchnorm_cnn(dropout: float = 0.0) -> SmallCNN:
    """The demo's CNN with a BatchNorm2d after each convolution."""
    model = SmallCNN(dropout)
    conv1, act1, conv2, act2, pool = model.features
    model.features = nn.Sequential(
        conv1, nn.BatchNorm2d(16), act1, conv2, nn.BatchNorm2d(32), act2, pool
    )
    return model


def shuffled(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> Batches:
    """Minibatches of in-memory tensors, reshuffled every epoch (a seeded generator)."""
    gen = torch.Generator().manual_seed(seed)

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]

    return epoch_batches


def fit(
    root: Path,
    name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    *,
    epochs: int,
    batch_size: int = 64,
    batches: Batches | None = None,
    eval_every: int | None = None,
    perturb: Perturb | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    config: dict[str, Any] | None = None,
    **collector_options: Any,
) -> Trace:
    """Train ``model`` with the collector attached; evaluate every ``eval_every`` steps
    (default: at the end of each epoch). ``perturb(step, x, y)`` may replace a batch
    (step counts from 1); ``scheduler`` steps once per epoch."""
    x_train, y_train, x_val, y_val = data
    batches = batches or shuffled(x_train, y_train, batch_size)
    loss_fn = nn.CrossEntropyLoss()
    options = {**COLLECTOR_OPTIONS, **collector_options}
    with Collector(
        root, name=name, config=config or {}, model=model, optimizer=optimizer, **options
    ) as tel:
        trace = Trace(tel.run_id, model)

        def evaluate(epoch: int) -> None:
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                loss, acc = loss_fn(logits, y_val), (logits.argmax(1) == y_val).float().mean()
            model.train()
            trace.val_loss.append(float(loss))
            trace.val_acc.append(float(acc))
            tel.log({"loss": loss, "acc": acc}, split="val", epoch=epoch)

        model.train()
        for epoch in range(epochs):
            source = iter(batches(epoch))
            while True:
                start = time.perf_counter()
                try:
                    xb, yb = next(source)
                except StopIteration:
                    break
                fetched = time.perf_counter()
                step = tel.step + 1
                if perturb is not None:
                    xb, yb = perturb(step, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = loss_fn(logits, yb)
                loss.backward()
                trace.grad_norm.append(global_grad_norm(model))
                optimizer.step()
                acc = (logits.argmax(1) == yb).float().mean()
                tel.log({"loss": loss, "acc": acc}, split="train", epoch=epoch)
                trace.wait_s.append(fetched - start)
                trace.step_s.append(time.perf_counter() - start)
                trace.train_loss.append(float(loss.detach()))
                trace.train_acc.append(float(acc))
                if eval_every is not None and step % eval_every == 0:
                    evaluate(epoch)
            if eval_every is None:
                evaluate(epoch)
            if scheduler is not None:
                scheduler.step()
    return trace
