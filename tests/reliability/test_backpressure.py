"""A writer slower than training: steps stay fast, drops are counted, memory is bounded.

The writer's filesystem is made to hang until the test releases it (an infinitely
slow disk), with a small queue so that it overflows within a few hundred steps.
"""

from __future__ import annotations

import functools
import json
import statistics
import threading
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch import nn

import analysis
from collector import Collector
from collector import collector as collector_module
from store.segments import write_segment
from store.writer import Writer

from .conftest import report

MAX_QUEUE = 8  # batches: the per-step rows go over in batches of 64 steps (collector.steprows)


class HangingDisk:
    """Once ``armed``, every write hangs until ``release`` is set."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.release = threading.Event()

    def __call__(self, table: pa.Table, directory: Path, filename: str) -> object:
        if self.armed.is_set():
            self.release.wait(120)
        return write_segment(table, directory, filename)


def _steps(model: nn.Module, opt: torch.optim.Optimizer, tel: Collector, n: int) -> list[float]:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(n):
        began = time.perf_counter()
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        tel.log({"loss": loss})
        times.append(time.perf_counter() - began)
    return times


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def test_a_hanging_writer_never_slows_or_grows_the_training_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Baseline: the same loop with a healthy writer.
    model, opt = _model()
    with Collector(tmp_path / "healthy", model=model, optimizer=opt) as tel:
        healthy = _steps(model, opt, tel, 300)

    disk = HangingDisk()
    small = functools.partial(Writer, max_queue=MAX_QUEUE, sink=disk)
    monkeypatch.setattr(collector_module, "Writer", small)
    model, opt = _model()
    tel = Collector(tmp_path / "runs", model=model, optimizer=opt, flush_every_s=0.05)
    disk.armed.set()  # the next flush hangs, and the queue can only fill
    try:
        _steps(model, opt, tel, 100)  # fills the queue
        stuck = _steps(model, opt, tel, 300)
        tracemalloc.start()  # (slows allocations: not while timing)
        _steps(model, opt, tel, 20)
        held = tracemalloc.get_traced_memory()[0]
        _steps(model, opt, tel, 150)
        grown = tracemalloc.get_traced_memory()[0] - held
        tracemalloc.stop()
        queued = len(tel._writer._items)
        dropped_while_stuck = tel.rows_dropped
    finally:
        disk.release.set()
    tel.close()

    assert queued <= MAX_QUEUE
    assert dropped_while_stuck > 0
    assert grown < 512 * 1024, f"memory grew by {grown} bytes while rows were being dropped"
    p50_healthy, p50_stuck = statistics.median(healthy), statistics.median(stuck)
    # Generous (a shared, loaded machine): a blocking put() would hang, not be 3x slower.
    assert p50_stuck < 3 * p50_healthy + 0.002
    with analysis.open_store(tmp_path / "runs") as store:
        payloads = store.sql("SELECT payload FROM events WHERE kind = 'dropped'")["payload"]
        recorded = sum(json.loads(p)["rows"] for p in payloads)
        final = json.loads(
            store.sql("SELECT payload FROM events WHERE kind = 'run_finished'")["payload"][0]
        )
    assert recorded == tel.rows_dropped == final["rows_dropped"]
    report(
        f"Back-pressure (writer hung, queue of {MAX_QUEUE} batches)",
        [
            f"median step {p50_healthy * 1e3:.2f} ms with a healthy writer, "
            f"{p50_stuck * 1e3:.2f} ms with a hung one (max {max(stuck) * 1e3:.2f} ms)",
            f"queue length {queued} <= {MAX_QUEUE}; {dropped_while_stuck} rows dropped, "
            f"all recorded in dropped events; Python memory grew {grown / 1024:.0f} KiB "
            "over 150 stuck steps",
        ],
    )
