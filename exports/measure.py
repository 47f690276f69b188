"""What an export benchmark measures on a loaded format: latency, parity, the task metric.

Every format is measured the same way, on the same inputs (same values, dtype and
device), with the same thread count: ``exports.benchmark`` sets that up once in a
``FormatBench``, whose ``prepare`` builds a format (``exports.formats``) and measures
its parity and metric, and whose ``time_all`` times every prepared format together
and turns what it measured into ``ExportResult`` rows, one per format and batch size.

* Latency: interleaved rounds (``exports.timing``): every format at every batch size
  is timed in each round, so machine load hits them alike; p50 with a 95 % interval
  of it, and p90, of the per-call wall time (``time.perf_counter``; on CUDA each call
  is synchronised, so a latency is the time until the result exists, not until the
  launch returned).
* Parity: outputs on one fixed batch against eager's. ``max_abs_diff`` is the largest
  absolute difference over every output element; ``max_rel_diff`` divides it by the
  largest absolute eager output, a scale-free number that does not explode where an
  output is near zero. A shape mismatch is an error, NaN where eager is finite is NaN.
* Metric: higher is better (accuracy by default), over all of ``eval_data`` at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exports import formats as export_formats
from exports import timing
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
    latency_ci_low_ms: float | None = None
    latency_ci_high_ms: float | None = None
    """The 95 % interval of the p50 over the timing rounds (``exports.timing``)."""
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
class Prepared:
    """A format built, loaded and checked for parity: ``loaded`` is None when it failed."""

    row: ExportResult
    loaded: export_formats.Loaded | None


@dataclass(frozen=True)
class FormatBench:
    """Everything shared by the formats of one benchmark: ``prepare`` builds and checks
    one, ``time_all`` times the prepared ones together."""

    model: nn.Module
    export_inputs: Batch
    timing_inputs: dict[int, Batch]
    parity_batch: Batch
    reference: list[torch.Tensor]
    batches: list[tuple[Batch, torch.Tensor]] | None
    metric_name: str | None
    metric: Metric | None
    warmup: int
    rounds: int
    repeats: int
    threads: int
    device: torch.device
    clock: Callable[[], float] = time.perf_counter

    def prepare(self, fmt: str, work: Path) -> Prepared:
        base = ExportResult(
            fmt, None, ExportStatus.FAILED, device=str(self.device), threads=self.threads
        )
        with _warnings_logged(fmt):
            try:
                ctx = export_formats.Context(work, self.device, self.threads)
                loaded = export_formats.lookup(fmt)(self.model, self.export_inputs, ctx)
                base = dataclasses.replace(
                    base,
                    size_bytes=loaded.size_bytes,
                    load_time_ms=loaded.load_time_ms,
                    sparsity=loaded.sparsity,
                    device=str(loaded.device),
                    threads=loaded.threads or torch.get_num_threads(),
                )
                base = self._quality(loaded, base)
            except Exception as e:
                log.info("export format %s failed: %s", fmt, _describe(e))
                return Prepared(dataclasses.replace(base, error=_describe(e)), None)
        return Prepared(base, loaded)

    def time_all(self, prepared: Sequence[Prepared]) -> list[ExportResult]:
        """Rows of every prepared format at every batch size, timed in interleaved rounds;
        a format that failed to prepare keeps its one row."""
        runners: dict[tuple[int, int], Callable[[], object]] = {}
        errors: dict[tuple[int, int], Exception] = {}
        for i, p in enumerate(prepared):
            for batch, inputs in self.timing_inputs.items() if p.loaded else ():
                try:
                    runners[i, batch] = _runner(p.loaded, inputs)  # type: ignore[arg-type]
                except Exception as e:  # inputs that cannot move to the format's device
                    errors[i, batch] = e
        with _warnings_logged("timing"), torch.no_grad():
            measured = timing.time_rounds(
                runners,
                rounds=self.rounds,
                repeats=self.repeats,
                warmup=self.warmup,
                clock=self.clock,
            )
        errors.update(measured.failed)  # type: ignore[arg-type]
        rows: list[ExportResult] = []
        for i, p in enumerate(prepared):
            if p.loaded is None:
                rows.append(p.row)
                continue
            for batch in self.timing_inputs:
                row = dataclasses.replace(p.row, batch_size=batch)
                error = errors.get((i, batch))
                if error is not None:
                    log.info("format %s at batch size %d failed: %s", row.format, batch, error)
                    rows.append(dataclasses.replace(row, error=_describe(error)))
                    continue
                latency = timing.summarise(measured.times[i, batch], batch)
                rows.append(
                    dataclasses.replace(
                        row,
                        status=ExportStatus.OK,
                        latency_p50_ms=latency.p50_ms,
                        latency_p90_ms=latency.p90_ms,
                        latency_ci_low_ms=latency.ci_low_ms,
                        latency_ci_high_ms=latency.ci_high_ms,
                        throughput=latency.throughput,
                    )
                )
        return rows

    def _quality(self, loaded: export_formats.Loaded, base: ExportResult) -> ExportResult:
        on_device = tuple(x.to(loaded.device) for x in self.parity_batch)
        abs_diff, rel_diff = parity(outputs(loaded.run, on_device), self.reference)
        base = dataclasses.replace(base, max_abs_diff=abs_diff, max_rel_diff=rel_diff)
        if self.batches is None or self.metric is None:
            return base
        value = evaluate(loaded.run, self.batches, self.metric, device=loaded.device)
        return dataclasses.replace(base, metric_name=self.metric_name, metric_value=value)


def _runner(loaded: export_formats.Loaded, inputs: Batch) -> Callable[[], object]:
    """One synchronised call of ``loaded`` on ``inputs`` (moved to its device once)."""
    on_device = tuple(x.to(loaded.device) for x in inputs)
    sync = _synchronizer(loaded.device)

    def call() -> None:
        loaded.run(*on_device)
        sync()

    return call


@contextlib.contextmanager
def _warnings_logged(what: str) -> Iterator[None]:
    """Exporters warn a lot (deprecations, tracer notes): logged, never raised, so that an
    application's warning filters cannot turn a warning into a failed format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("export format %s warned: %s", what, w.message)


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
