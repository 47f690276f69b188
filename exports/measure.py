"""What an export benchmark measures on a loaded format: latency, parity, the task metric.

Every format is measured the same way, on the same inputs (same values, dtype and
device), with the same thread count: ``exports.benchmark`` sets that up once in a
``FormatBench``, whose ``one_format`` builds a format (``exports.formats``)
and turns what it measures into ``ExportResult`` rows, one per batch size.

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

import dataclasses
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exports import formats as export_formats
from store.schema import ExportStatus

log = logging.getLogger(__name__)

Metric = Callable[[torch.Tensor, torch.Tensor], float]
Batch = tuple[torch.Tensor, ...]

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ExportResult:
    """One row of the ``exports`` stream: a format at one batch size (see store.schema)."""

    format: str
    batch_size: int | None
    status: ExportStatus
    error: str | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    throughput: float | None = None
    size_bytes: int | None = None
    load_time_ms: float | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    metric_name: str | None = None
    metric_value: float | None = None
    sparsity: float | None = None
    device: str | None = None
    threads: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == ExportStatus.OK


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


@dataclass(frozen=True)
class FormatBench:
    """Everything shared by the formats of one benchmark; ``one_format`` measures one."""

    model: nn.Module
    export_inputs: Batch
    timing_inputs: dict[int, Batch]
    parity_batch: Batch
    reference: list[torch.Tensor]
    batches: list[tuple[Batch, torch.Tensor]] | None
    metric_name: str | None
    metric: Metric | None
    warmup: int
    repeats: int
    threads: int
    device: torch.device

    def one_format(self, fmt: str, work: Path) -> list[ExportResult]:
        base = ExportResult(
            fmt, None, ExportStatus.FAILED, device=str(self.device), threads=self.threads
        )
        # Exporters warn a lot (deprecations, tracer notes): logged, never raised, so that
        # an application's warning filters cannot turn a warning into a failed format.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ctx = export_formats.Context(work, self.device, self.threads)
                loaded = export_formats.lookup(fmt)(self.model, self.export_inputs, ctx)
                base = dataclasses.replace(
                    base,
                    size_bytes=loaded.size_bytes,
                    load_time_ms=loaded.load_time_ms,
                    sparsity=loaded.sparsity,
                    device=str(loaded.device),
                )
                base = self._quality(loaded, base)
            except Exception as e:
                log.info("export format %s failed: %s", fmt, _describe(e))
                rows = [dataclasses.replace(base, error=_describe(e))]
            else:
                rows = [self._latency(loaded, base, b, x) for b, x in self.timing_inputs.items()]
        for w in caught:
            log.debug("export format %s warned: %s", fmt, w.message)
        return rows

    def _quality(self, loaded: export_formats.Loaded, base: ExportResult) -> ExportResult:
        on_device = tuple(x.to(loaded.device) for x in self.parity_batch)
        abs_diff, rel_diff = parity(outputs(loaded.run, on_device), self.reference)
        base = dataclasses.replace(base, max_abs_diff=abs_diff, max_rel_diff=rel_diff)
        if self.batches is None or self.metric is None:
            return base
        value = evaluate(loaded.run, self.batches, self.metric, device=loaded.device)
        return dataclasses.replace(base, metric_name=self.metric_name, metric_value=value)

    def _latency(
        self, loaded: export_formats.Loaded, base: ExportResult, batch_size: int, inputs: Batch
    ) -> ExportResult:
        row = dataclasses.replace(base, batch_size=batch_size)
        try:
            on_device = tuple(x.to(loaded.device) for x in inputs)
            latency = time_calls(
                loaded.run,
                on_device,
                warmup=self.warmup,
                repeats=self.repeats,
                device=loaded.device,
            )
        except Exception as e:
            log.info("format %s at batch size %d failed: %s", base.format, batch_size, e)
            return dataclasses.replace(row, error=_describe(e))
        return dataclasses.replace(
            row,
            status=ExportStatus.OK,
            latency_p50_ms=latency.p50_ms,
            latency_p90_ms=latency.p90_ms,
            throughput=latency.throughput,
        )


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


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
