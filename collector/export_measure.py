"""What an export benchmark measures on a loaded format: latency, parity, the task metric.

Every format is measured the same way, on the same inputs (same values, dtype and
device), with the same thread count: ``collector.export`` sets that up once and
calls these functions per format.

* Latency: ``warmup`` untimed calls, then ``repeats`` timed ones; p50 and p90 of the
  per-call wall time (``time.perf_counter``; on CUDA each call is synchronised, so a
  latency is the time until the result exists, not until the launch returned).
* Parity: outputs on one fixed batch against eager's. ``max_abs_diff`` is the largest
  absolute difference over every output element; ``max_rel_diff`` divides it by the
  largest absolute eager output, a scale-free number that does not explode where an
  output is near zero. A shape mismatch is an error, NaN where eager is finite is NaN.
* Metric: higher is better (accuracy by default), over all of ``eval_data`` at once.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Metric = Callable[[torch.Tensor, torch.Tensor], float]
Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    throughput: float
    """Samples per second over the timed calls."""


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy: share of rows whose largest output is at the target class."""
    return float((outputs.argmax(dim=-1) == targets).float().mean())


METRICS: dict[str, Metric] = {"accuracy": accuracy}


def tile(inputs: Batch, batch_size: int) -> Batch:
    """``inputs`` (batch first) repeated or cut to ``batch_size`` rows, cycling the examples."""
    out = []
    for x in inputs:
        index = torch.arange(batch_size, device=x.device) % x.shape[0]
        out.append(x.index_select(0, index).contiguous())
    return tuple(out)


def time_calls(
    run: Callable[..., Any],
    inputs: Batch,
    *,
    warmup: int,
    repeats: int,
    device: torch.device,
) -> Latency:
    """Latency percentiles of ``run(*inputs)`` (see the module docstring)."""
    sync = _synchronizer(device)
    with torch.no_grad():
        for _ in range(warmup):
            run(*inputs)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(*inputs)
            sync()
            times.append(time.perf_counter() - start)
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    batch = int(inputs[0].shape[0])
    total = sum(times)
    return Latency(
        p50_ms=statistics.median(times) * 1000.0,
        p90_ms=deciles[8] * 1000.0,
        throughput=batch * repeats / total if total > 0 else math.inf,
    )


def outputs(run: Callable[..., Any], inputs: Batch) -> list[torch.Tensor]:
    """``run(*inputs)``'s output tensors, flattened, as float64 on the CPU."""
    with torch.no_grad():
        result = run(*inputs)
    return [t.detach().to("cpu", torch.float64) for t in _leaves(result)]


def parity(got: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(max_abs_diff, max_rel_diff) of ``got`` against ``reference`` (eager's outputs)."""
    if len(got) != len(reference):
        raise ValueError(f"{len(got)} output tensor(s), eager has {len(reference)}")
    worst = 0.0
    scale = 0.0
    for i, (a, b) in enumerate(zip(got, reference, strict=True)):
        if a.shape != b.shape:
            raise ValueError(f"output {i} has shape {tuple(a.shape)}, eager's has {tuple(b.shape)}")
        if a.numel():
            worst = max(worst, float((a - b).abs().max()), key=_nan_wins)
            scale = max(scale, float(b.abs().max()))
    if math.isnan(worst):
        return worst, worst
    if scale == 0.0:
        return worst, 0.0 if worst == 0.0 else math.inf
    return worst, worst / scale


def evaluate(
    run: Callable[..., Any],
    batches: Iterable[tuple[Batch, torch.Tensor]],
    metric: Metric,
    *,
    device: torch.device,
) -> float:
    """``metric`` over every batch's outputs (first output tensor) and targets, at once."""
    outs, targets = [], []
    with torch.no_grad():
        for inputs, target in batches:
            first = _leaves(run(*(x.to(device) for x in inputs)))[0]
            outs.append(first.detach().to("cpu", torch.float32))
            targets.append(target.detach().cpu())
    return float(metric(torch.cat(outs), torch.cat(targets)))


def eval_batches(eval_data: Any, *, chunk: int) -> list[tuple[Batch, torch.Tensor]]:
    """``eval_data`` as (inputs, targets) batches.

    Accepts ``(inputs, targets)`` tensors (cut into batches of ``chunk`` rows), or an
    iterable of such pairs (a DataLoader); inputs may be a tensor or a tuple of them.
    """
    if isinstance(eval_data, tuple | list) and len(eval_data) == 2:
        x, y = eval_data
        if isinstance(y, torch.Tensor) and _is_inputs(x):
            xs = _as_batch(x)
            n = int(xs[0].shape[0])
            return [
                (tuple(t[i : i + chunk] for t in xs), y[i : i + chunk]) for i in range(0, n, chunk)
            ]
    batches = []
    for item in eval_data:
        if not (isinstance(item, tuple | list) and len(item) == 2 and _is_inputs(item[0])):
            raise TypeError(
                "eval_data must be (inputs, targets) tensors or an iterable of such pairs, "
                f"got an item of type {type(item).__name__}"
            )
        batches.append((_as_batch(item[0]), item[1]))
    return batches


def _is_inputs(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return True
    return isinstance(x, tuple | list) and all(isinstance(t, torch.Tensor) for t in x)


def _as_batch(x: torch.Tensor | Sequence[torch.Tensor]) -> Batch:
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def _leaves(value: Any) -> list[torch.Tensor]:
    """Tensors in ``value`` (a tensor, array, or nested tuple/list/dict of them), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _leaves(v)]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _leaves(v)]
    if hasattr(value, "__array__"):
        return [torch.as_tensor(value)]
    return []


def _nan_wins(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
