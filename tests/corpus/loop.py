"""The corpus's training loop: ``harness.fit`` with the knobs real training loops have.

Like ``tests.scenarios.harness.fit`` (same collector options, same self-measured
``Trace``), plus what the corpus needs to be varied and what its classic mistakes are
made of: classification or regression (no accuracy logged), a scheduler stepped per
epoch or per optimizer step, gradient clipping, gradient accumulation, bf16 autocast,
label smoothing, evaluation every N steps or once per epoch, training metrics logged per
step or once per epoch (an epoch mean, as imported runs have), a loader that sleeps, and
the mistakes themselves: ``zero_grad=False`` (gradients pile up), ``eval_mode=False``
(validation in training mode). And the legitimate variants a rule about those mistakes
must not mistake for them: ``zero_grad_set_to_none=False`` (gradients zeroed in place,
left as tensors) and ``zero_grad_at="before_backward"`` (reset after the forward, just
before ``backward``, as some loops do).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from collector import Collector
from tests.corpus.data import Task
from tests.scenarios.harness import COLLECTOR_OPTIONS, Perturb, Trace, global_grad_norm

Scheduler = torch.optim.lr_scheduler.LRScheduler


@dataclass
class CorpusTrace(Trace):
    """The scenario suite's trace, plus the validation R^2 of a regression."""

    val_r2: list[float] = field(default_factory=list)
    steps: int = 0
    # the global gradient norm before clipping (clip_grad_norm_'s return value; without
    # clipping, the same as ``grad_norm``)
    grad_norm_preclip: list[float] = field(default_factory=list)


def batches(
    task: Task, batch_size: int, *, seed: int = 0, sleep_s: float = 0.0
) -> Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Minibatches of the training set, reshuffled each epoch (seeded); the last one is
    short when the batch size does not divide the set. ``sleep_s``: a slow loader."""
    gen = torch.Generator().manual_seed(seed)

    def epoch_batches(_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(task.x), generator=gen)
        for i in range(0, len(task.x), batch_size):
            if sleep_s:
                time.sleep(sleep_s)
            idx = order[i : i + batch_size]
            yield task.x[idx], task.y[idx]

    return epoch_batches


def loss_and_accuracy(
    out: torch.Tensor,
    y: torch.Tensor,
    task: Task,
    *,
    label_smoothing: float = 0.0,
    class_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-entropy and accuracy over every position (a language model's too), or the
    mean squared error and no accuracy for a regression."""
    if task.classes is None:
        return nn.functional.mse_loss(out.reshape(y.shape).float(), y), None
    logits = out.reshape(-1, task.classes).float()
    target = y.reshape(-1)
    loss = nn.functional.cross_entropy(
        logits, target, weight=class_weight, label_smoothing=label_smoothing
    )
    return loss, (logits.argmax(1) == target).float().mean()


def _predictions(
    y: torch.Tensor, out: torch.Tensor, task: Task
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and outputs as the loss reads them (``loss_and_accuracy``): class ids and
    one row of scores each, or the regression's values."""
    if task.classes is None:
        return y, out
    return y.reshape(-1), out.reshape(-1, task.classes)


def train(
    root: Path,
    name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    *,
    epochs: int,
    batch_size: int = 64,
    scheduler: Scheduler | None = None,
    schedule_every: Literal["epoch", "step"] = "epoch",
    clip: float | None = None,
    accumulate: int = 1,
    bf16: bool = False,
    label_smoothing: float = 0.0,
    class_weight: torch.Tensor | None = None,
    eval_every: int | None = None,
    log_train: Literal["step", "epoch"] = "step",
    sleep_s: float = 0.0,
    perturb: Perturb | None = None,
    zero_grad: bool = True,
    zero_grad_set_to_none: bool = True,
    zero_grad_at: Literal["start", "before_backward"] = "start",
    eval_mode: bool = True,
    log_predictions: bool = True,
    config: dict[str, Any] | None = None,
    **collector_options: Any,
) -> CorpusTrace:
    """Train ``model`` on ``task`` with the collector attached, measuring the run itself.

    Evaluation runs every ``eval_every`` optimizer steps, else at the end of each epoch
    (before the epoch's scheduler step). ``accumulate`` micro-batches make one optimizer
    step (the loss divided by it; a short remainder at the end of an epoch still steps).
    ``perturb(step, x, y)`` may replace a batch (step counts from 1). The gradients are
    reset (``zero_grad``) before each optimizer step's first micro-batch: at its start,
    or (``zero_grad_at="before_backward"``) between its forward and its backward.
    ``class_weight``: the training loss's per-class weights (validation is unweighted).
    ``log_predictions``: the validation predictions at each evaluation and the training
    batches' after each optimizer step (``tel.log_predictions``).
    """
    source = batches(task, batch_size, sleep_s=sleep_s)
    options = {**COLLECTOR_OPTIONS, **collector_options}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with Collector(
        root, name=name, config=config or {}, model=model, optimizer=optimizer, **options
    ) as tel:
        trace = CorpusTrace(tel.run_id, model)

        def evaluate(epoch: int) -> None:
            if eval_mode:
                model.eval()
            with torch.no_grad(), autocast:
                out = model(task.x_val)
                loss, acc = loss_and_accuracy(out, task.y_val, task)
            model.train()
            if log_predictions:
                tel.log_predictions(*_predictions(task.y_val, out, task), split="val", epoch=epoch)
            trace.val_loss.append(float(loss))
            metrics = {"loss": loss}
            if acc is not None:
                trace.val_acc.append(float(acc))
                metrics["acc"] = acc
            else:
                trace.val_r2.append(1.0 - float(loss) / float(task.y_val.var()))
            tel.log(metrics, split="val", epoch=epoch)

        model.train()
        pending: list[tuple[float, float | None]] = []  # micro-batches of this optimizer step
        predicted: list[tuple[torch.Tensor, torch.Tensor]] = []  # their targets and outputs
        epoch_losses: list[float] = []
        epoch_accs: list[float] = []

        def optimizer_step(epoch: int, started: float, waited: float) -> None:
            preclip = None
            if clip is not None:
                preclip = float(nn.utils.clip_grad_norm_(model.parameters(), clip))
            trace.grad_norm.append(global_grad_norm(model))
            trace.grad_norm_preclip.append(trace.grad_norm[-1] if preclip is None else preclip)
            optimizer.step()
            if scheduler is not None and schedule_every == "step":
                scheduler.step()
            loss = sum(p[0] for p in pending) / len(pending)
            accs = [p[1] for p in pending if p[1] is not None]
            pending.clear()
            trace.steps += 1
            for yb, out in predicted:
                tel.log_predictions(*_predictions(yb, out, task), split="train", epoch=epoch)
            predicted.clear()
            trace.train_loss.append(loss)
            epoch_losses.append(loss)
            metrics = {"loss": loss}
            if accs:
                metrics["acc"] = sum(accs) / len(accs)
                trace.train_acc.append(metrics["acc"])
                epoch_accs.append(metrics["acc"])
            if log_train == "step":
                tel.log(metrics, split="train", epoch=epoch)
            trace.wait_s.append(waited)
            trace.step_s.append(time.perf_counter() - started)
            if eval_every is not None and tel.step % eval_every == 0:
                evaluate(epoch)

        for epoch in range(epochs):
            epoch_losses.clear()
            epoch_accs.clear()
            stream = iter(source(epoch))
            started, waited = time.perf_counter(), 0.0
            while True:
                fetch = time.perf_counter()
                try:
                    xb, yb = next(stream)
                except StopIteration:
                    break
                waited += time.perf_counter() - fetch
                if perturb is not None:
                    xb, yb = perturb(tel.step + 1, xb, yb)
                reset = zero_grad and not pending
                if reset and zero_grad_at == "start":
                    optimizer.zero_grad(set_to_none=zero_grad_set_to_none)
                with autocast:
                    out = model(xb)
                    loss, acc = loss_and_accuracy(
                        out, yb, task, label_smoothing=label_smoothing, class_weight=class_weight
                    )
                if log_predictions:
                    predicted.append((yb, out.detach()))
                if reset and zero_grad_at == "before_backward":
                    optimizer.zero_grad(set_to_none=zero_grad_set_to_none)
                (loss / accumulate).backward()
                pending.append((float(loss.detach()), None if acc is None else float(acc)))
                if len(pending) == accumulate:
                    optimizer_step(epoch, started, waited)
                    started, waited = time.perf_counter(), 0.0
            if pending:  # a short accumulation at the end of the epoch still steps
                optimizer_step(epoch, started, waited)
            if log_train == "epoch":
                metrics = {"loss": sum(epoch_losses) / len(epoch_losses)}
                if epoch_accs:
                    metrics["acc"] = sum(epoch_accs) / len(epoch_accs)
                tel.log(metrics, split="train", epoch=epoch)
            if eval_every is None:
                evaluate(epoch)
            if scheduler is not None and schedule_every == "epoch":
                scheduler.step()
    return trace
