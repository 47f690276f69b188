"""Labelled export benchmarks for the rule contract test (rules ``export_*``).

The numbers are those the demo CNN measured on a 2-core CPU (``telemetry export-bench
--demo``), so a case reads like a real benchmark: eager, the exact formats, the lossy
ones with their accuracy on the validation set, and fp16 failed (CPU only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from store.schema import Stream, stream_columns
from tests.builders import RunBuilder

STEP = 276
"""The step the benchmark ran at: the end of training."""

ACCURACY = 0.9944
"""Eager's accuracy on the validation set."""


class ExportRunBuilder(RunBuilder):
    """A RunBuilder that also writes ``exports`` rows."""

    def exports(self, rows: Sequence[Mapping[str, Any]], *, step: int = STEP) -> ExportRunBuilder:
        """One benchmark: ``rows`` (stream columns; missing ones null) at ``step``."""
        unknown = {k for row in rows for k in row} - set(stream_columns(Stream.EXPORTS))
        if unknown:
            raise TypeError(f"exports() got unknown column(s) {sorted(unknown)}")
        columns = {name: [row.get(name) for row in rows] for name in stream_columns(Stream.EXPORTS)}
        self._add(Stream.EXPORTS, step, None, columns)
        return self


def timed(
    fmt: str, p50_ms: Mapping[int, float], *, spread: float | None = 0.05, **facts: Any
) -> list[dict[str, Any]]:
    """The rows of one format that ran: one per batch size, with its p50 latency and its
    interval ``p50 * (1 -/+ spread)`` (``spread=None``: no interval, as rows written
    before intervals were measured)."""
    return [
        {
            "format": fmt,
            "batch_size": batch,
            "latency_p50_ms": p50,
            "latency_ci_low_ms": None if spread is None else p50 * (1 - spread),
            "latency_ci_high_ms": None if spread is None else p50 * (1 + spread),
            "latency_p90_ms": p50 * 1.2,
            "throughput": batch / p50 * 1000.0,
            "status": "ok",
            "device": "cpu",
            "threads": 2,
            **facts,
        }
        for batch, p50 in p50_ms.items()
    ]


def failed(fmt: str, error: str) -> list[dict[str, Any]]:
    return [{"format": fmt, "status": "failed", "error": error, "device": "cpu", "threads": 2}]


def demo_cnn_benchmark(**overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every format of the demo CNN's benchmark; ``overrides`` replaces a format's rows."""
    acc = {"metric_name": "accuracy", "metric_value": ACCURACY}
    formats = {
        "eager": timed(
            "eager", {1: 0.319, 32: 1.22}, size_bytes=156_983, max_abs_diff=0.0,
            max_rel_diff=0.0, sparsity=0.0, **acc,
        ),
        "torchscript_trace": timed(
            "torchscript_trace", {1: 0.092, 32: 0.738}, size_bytes=173_033, max_abs_diff=0.0,
            max_rel_diff=0.0, **acc,
        ),
        "torchscript_script": timed(
            "torchscript_script", {1: 0.101, 32: 0.863}, size_bytes=172_979, max_abs_diff=0.0,
            max_rel_diff=0.0, **acc,
        ),
        "torch_export": timed(
            "torch_export", {1: 0.312, 32: 1.098}, size_bytes=187_707, max_abs_diff=0.0,
            max_rel_diff=0.0, **acc,
        ),
        "onnxruntime": timed(
            "onnxruntime", {1: 0.071, 32: 0.238}, size_bytes=166_432, max_abs_diff=2.9e-6,
            max_rel_diff=1.6e-7, **acc,
        ),
        "dynamic_int8": timed(
            "dynamic_int8", {1: 0.514, 32: 1.045}, size_bytes=58_165, max_abs_diff=0.144,
            max_rel_diff=0.008, **acc,
        ),
        "pruned_l1_0.3": timed(
            "pruned_l1_0.3", {1: 0.339, 32: 1.176}, size_bytes=156_983, max_abs_diff=1.44,
            max_rel_diff=0.08, sparsity=0.299, metric_name="accuracy", metric_value=0.9889,
        ),
        "bf16": timed(
            "bf16", {1: 0.711, 32: 6.94}, size_bytes=80_375, max_abs_diff=0.074,
            max_rel_diff=0.004, **acc,
        ),
        "fp16": failed("fp16", "FormatUnavailable: fp16 is measured on CUDA only"),
    }  # fmt: skip
    formats.update(overrides)
    return [row for rows in formats.values() for row in rows]


def export_benchmarked(root: Path) -> RunBuilder:
    """A trained CNN whose export formats all keep its accuracy (export_summary)."""
    run = ExportRunBuilder(root, "exported")
    run.scalars("loss", "train", [2.0 - i / 100 for i in range(STEP)])
    return run.exports(demo_cnn_benchmark()).finish()


def export_broken_trace(root: Path) -> RunBuilder:
    """The trace froze a data-dependent branch: the fastest format, and a wrong one
    (export_parity). Every other format is as in ``export_benchmarked``."""
    run = ExportRunBuilder(root, "broken-trace")
    run.scalars("loss", "train", [2.0 - i / 100 for i in range(STEP)])
    trace = timed(
        "torchscript_trace", {1: 0.05, 32: 0.2}, size_bytes=173_033, max_abs_diff=7.0,
        max_rel_diff=0.4, metric_name="accuracy", metric_value=0.62,
    )  # fmt: skip
    return run.exports(demo_cnn_benchmark(torchscript_trace=trace)).finish()


POSITIVE = {
    "export_summary": export_benchmarked,
    "export_parity": export_broken_trace,
}
"""A run each export rule must flag (to merge into ``tests.analysis.cases.POSITIVE``)."""
