"""Export benchmarks: eager vs TorchScript vs torch.export vs ONNX Runtime vs int8, pruned, half.

One honest, repeatable measurement of the deployment options of a model, stored
in the ``exports`` stream of the run that trained it (or of a new run named after
the model), so that it lands in the same store, findings and report.

For each format (``exports.formats``): export, save into a temporary
folder, load back, then measure (``exports.measure``) on identical
inputs, dtype, device and thread count: size on disk, load time, max absolute and
relative output difference against eager on one fixed batch, and the task metric on
``eval_data``. Then every loaded format is timed at every batch size in interleaved
rounds (``exports.timing``): latency p50 with its 95 % interval, p90 and throughput.
A format that fails is recorded with its error, and the next one runs. Eager is
always measured first: it is the baseline of the parity and metric columns.

Threads are pinned: torch (``torch.set_num_threads``) and ONNX Runtime (intra-op
threads; inter-op 1) run every format with ``threads`` (default 1, recorded in each
row), and torch's count is restored afterwards. A format that brought all the cores
against eager's few would show a thread count, not a speed-up.

Whether a format reproduces eager (its parity verdict) is not decided here: it is
computed from the recorded rows by one SQL macro (``export_verdicts`` in
``analysis/macros/exports.sql``), which the ``export_parity`` rule, the report and
``telemetry export-bench``'s table all read.

Example::

    from collector import Collector
    from exports.benchmark import benchmark

    with Collector("runs", name="digits-cnn", model=model, optimizer=opt) as tel:
        ...  # train
        result = benchmark(model, x_val[:32], run=tel, eval_data=(x_val, y_val))
    for r in result.ok():
        print(r.format, r.batch_size, r.latency_p50_ms, r.max_abs_diff, r.metric_value)

Errors: ``ConfigError`` (bad arguments, raised before anything runs). Everything a
format raises is caught and recorded; only ``KeyboardInterrupt``-like exits stop it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from collector.collector import Collector
from exports import formats as formats_
from exports import measure, timing
from exports.measure import ExportResult
from store.errors import ConfigError
from store.location import RemotePath
from store.records import json_safe
from store.schema import ExportStatus, Stream

__all__ = ["ExportBenchmark", "ExportResult", "benchmark", "environment"]

log = logging.getLogger(__name__)

_PARITY_ROWS = 64
"""Rows of the fixed parity batch: the first of ``eval_data``'s when it is given."""


@dataclass(frozen=True)
class ExportBenchmark:
    """What ``benchmark`` measured, and where it was stored."""

    run_id: str
    results: list[ExportResult]
    env: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> list[ExportResult]:
        return [r for r in self.results if r.ok]

    def failed(self) -> list[ExportResult]:
        return [r for r in self.results if not r.ok]


def benchmark(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    run: Collector | None = None,
    root: str | os.PathLike[str] | RemotePath | None = None,
    name: str | None = None,
    formats: Sequence[str] | None = None,
    eval_data: Any = None,
    metric: str | measure.Metric | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 5,
    rounds: int = 10,
    repeats: int = 3,
    threads: int = 1,
) -> ExportBenchmark:
    """Export ``model`` in each of ``formats``, measure each, and record the rows.

    Arguments that are not obvious:
        example_inputs: one tensor or a tuple of tensors, batch first, as the model's
            positional inputs; their values are the fixed parity batch (unless
            ``eval_data`` is given, whose first rows are used instead) and are tiled
            to each of ``batch_sizes`` for timing.
        run, root, name: record into the open collector ``run``, or else into a new run
            in the store ``root`` named ``name`` (default: the model's class name).
        formats: default every format the model's device supports
            (``export_formats.default_formats``); names as in ``export_formats``.
        eval_data: ``(inputs, targets)`` tensors or an iterable of such batches; with
            it each format's ``metric`` (default ``"accuracy"``, or a callable
            ``(outputs, targets) -> float``, higher is better) is measured.
        warmup, rounds, repeats: ``warmup`` untimed calls per format and batch size, then
            ``rounds`` interleaved rounds (at least 6, for a 95 % interval of the
            median) of ``repeats`` timed calls each (``exports.timing``).
        threads: intra-op threads for torch and ONNX Runtime while measuring (default 1:
            the same for every format whatever the machine; torch's is restored).
    """
    inputs = _check_inputs(model, example_inputs)
    names = _check_formats(formats, _device_of(model))
    metric_name, metric_fn = _check_metric(metric, eval_data)
    sizes = _check_counts(batch_sizes, warmup, rounds, repeats, threads)
    if run is None and root is None:
        raise ConfigError("pass run= (an open Collector) or root= (a store directory)")
    if run is not None and not isinstance(run, Collector):
        raise ConfigError(f"run must be an open Collector or None, got {type(run).__name__}")
    device = _device_of(model)
    model = _without_forward_hooks(model)
    inputs = tuple(x.to(device) for x in inputs)
    batches = measure.eval_batches(eval_data, chunk=max(sizes)) if eval_data is not None else None
    parity_batch = _parity_batch(inputs, batches, device)
    env = environment(device, threads, inputs)
    env["timing"] = {
        "warmup": warmup,
        "rounds": rounds,
        "repeats_per_round": repeats,
        "interval": f"{timing.CONFIDENCE:.0%} order-statistic interval of the median "
        "of the round medians",
    }
    sink = run or Collector(
        root,  # type: ignore[arg-type]  # checked above: root is set when run is None
        name=name or type(model).__name__,
        config={"export_benchmark": {"formats": list(names), "batch_sizes": list(sizes)}},
    )
    previous_threads = torch.get_num_threads()
    results: list[ExportResult] = []
    error: BaseException | None = None
    try:
        torch.set_num_threads(threads)
        model.eval()
        reference = measure.outputs(model, parity_batch)
        bench = measure.FormatBench(
            model=model,
            # Exported with >= 2 rows: torch.export specialises a batch of 1 to a constant.
            export_inputs=measure.tile(inputs, max(2, int(inputs[0].shape[0]))),
            timing_inputs={b: measure.tile(inputs, b) for b in sizes},
            parity_batch=parity_batch,
            reference=reference,
            batches=batches,
            metric_name=metric_name,
            metric=metric_fn,
            warmup=warmup,
            rounds=rounds,
            repeats=repeats,
            threads=threads,
            device=device,
        )
        # Every format stays loaded until the rounds are over: that is what lets their
        # calls interleave (memory: one copy of the model per format).
        with tempfile.TemporaryDirectory(prefix="telemetry-export-") as work:
            prepared = [bench.prepare(fmt, Path(work)) for fmt in names]
            results = bench.time_all(prepared)
        _record(sink, results, env)
    except BaseException as e:
        error = e
        raise
    finally:
        torch.set_num_threads(previous_threads)
        if run is None:
            sink.close(error=error)
        else:
            sink.flush()
    return ExportBenchmark(sink.run_id, results, env)


def environment(
    device: torch.device, threads: int, inputs: Sequence[torch.Tensor]
) -> dict[str, Any]:
    """What the numbers depend on besides the model: versions, threads, hardware, inputs."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.machine()} ({torch.backends.cpu.get_cpu_capability()})"
    return {
        "torch": torch.__version__,
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware,
        "device": str(device),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "quantized_engine": torch.backends.quantized.engine,
        "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype)} for x in inputs],
    }


# -- recording ---------------------------------------------------------------------------------


def _record(sink: Collector, rows: Sequence[ExportResult], env: dict[str, Any]) -> None:
    """Append ``rows`` to the run's ``exports`` stream at its step (never blocks)."""
    columns: dict[str, list[Any]] = {f.name: [] for f in dataclasses.fields(ExportResult)}
    for row in rows:
        for key in columns:
            value = getattr(row, key)
            columns[key].append(value.value if isinstance(value, ExportStatus) else value)
    columns["env"] = [json.dumps(json_safe(env), sort_keys=True)] * len(rows)
    sink.record(Stream.EXPORTS, columns)


# -- checks at the door ------------------------------------------------------------------------


def _check_inputs(model: object, example: object) -> tuple[torch.Tensor, ...]:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = (example,) if isinstance(example, torch.Tensor) else example
    if not (
        isinstance(inputs, tuple | list)
        and inputs
        and all(isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] for x in inputs)
    ):
        raise ConfigError(
            "example_inputs must be a tensor or a tuple of tensors with a non-empty batch "
            f"dimension first, e.g. torch.randn(8, 1, 8, 8); got {example!r:.200}"
        )
    if len({int(x.shape[0]) for x in inputs}) != 1:
        shapes = [tuple(x.shape) for x in inputs]
        raise ConfigError(f"example_inputs must share their batch size (dim 0), got {shapes}")
    return tuple(inputs)


def _check_formats(names: Sequence[str] | None, device: torch.device) -> tuple[str, ...]:
    if names is None:
        return formats_.default_formats(device)
    if isinstance(names, str):
        raise ConfigError(f"formats must be a list of names, got the string {names!r}")
    unknown = [n for n in names if not (isinstance(n, str) and formats_.is_known(n))]
    if unknown:
        raise ConfigError(
            f"unknown export format(s) {unknown}; known: {', '.join(formats_.FORMATS)} "
            "and pruned_l1_<amount> with 0 < amount < 1 (e.g. pruned_l1_0.5)"
        )
    return tuple(dict.fromkeys(["eager", *names]))  # eager first: the baseline


def _check_metric(
    metric: str | measure.Metric | None, eval_data: object
) -> tuple[str | None, measure.Metric | None]:
    if metric is not None and eval_data is None:
        raise ConfigError("metric= needs eval_data= (inputs, targets) to be measured on")
    if eval_data is None:
        return None, None
    if metric is None or isinstance(metric, str):
        key = metric or "accuracy"
        if key not in measure.METRICS:
            raise ConfigError(
                f"unknown metric {key!r}; built in: {sorted(measure.METRICS)}, or pass a "
                "callable (outputs, targets) -> float, higher is better"
            )
        return key, measure.METRICS[key]
    if not callable(metric):
        raise ConfigError(f"metric must be a name or a callable, got {metric!r}")
    return getattr(metric, "__name__", "metric"), metric


def _check_counts(
    batch_sizes: Sequence[int], warmup: int, rounds: int, repeats: int, threads: int
) -> tuple[int, ...]:
    def is_int(v: object, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    sizes = [] if isinstance(batch_sizes, int) else list(batch_sizes or [])
    if not sizes or not all(is_int(b, 1) for b in sizes):
        raise ConfigError(f"batch_sizes must be a list of ints >= 1, got {batch_sizes!r}")
    if not is_int(warmup, 0):
        raise ConfigError(f"warmup must be an int >= 0, got {warmup!r}")
    if not is_int(rounds, timing.MIN_ROUNDS):
        raise ConfigError(
            f"rounds must be an int >= {timing.MIN_ROUNDS} (fewer cannot give a "
            f"{timing.CONFIDENCE:.0%} interval of the median latency), got {rounds!r}"
        )
    if not is_int(repeats, 1):
        raise ConfigError(f"repeats (timed calls per round) must be an int >= 1, got {repeats!r}")
    if not is_int(threads, 1):
        raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
    return tuple(dict.fromkeys(sizes))


# -- small pieces ------------------------------------------------------------------------------


def _parity_batch(
    inputs: measure.Batch,
    batches: list[tuple[measure.Batch, torch.Tensor]] | None,
    device: torch.device,
) -> measure.Batch:
    if not batches:
        return inputs
    taken: list[measure.Batch] = []
    for batch, _ in batches:
        taken.append(batch)
        if sum(int(b[0].shape[0]) for b in taken) >= _PARITY_ROWS:
            break
    columns = zip(*taken, strict=True)
    return tuple(torch.cat(parts)[:_PARITY_ROWS].to(device) for parts in columns)


_FORWARD_HOOKS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)


def _without_forward_hooks(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` without forward hooks: a collector's (or a profiler's)
    hooks would be timed with the model, and TorchScript cannot compile Python hooks."""
    try:
        clone = copy.deepcopy(model)
    except Exception as e:  # an attribute that refuses to be copied: measure the model itself
        log.warning("cannot copy %s (%s); benchmarking it with its hooks", type(model).__name__, e)
        return model
    for module in clone.modules():
        for attr in _FORWARD_HOOKS:
            hooks = getattr(module, attr, None)
            if isinstance(hooks, dict):
                hooks.clear()
    return clone.eval()


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
