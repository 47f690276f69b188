"""The ``system`` rows' step timing (``collector.system``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from collector import Collector
from store.schema import Stream

from .read_back import read_stream


def test_samples_per_s_counts_every_micro_batch_of_an_accumulated_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with Collector(tmp_path, model=model, optimizer=opt) as tel:
        for _ in range(4):
            opt.zero_grad()
            for i in range(4):  # four micro-batches of 8
                (F.cross_entropy(model(x[i::4]), y[i::4]) / 4).backward()
            opt.step()
    system = sorted(read_stream(tel.run_dir, Stream.SYSTEM).to_pylist(), key=lambda r: r["step"])
    assert [r["batch_size"] for r in system] == [32] * 4
    timed = [r for r in system if r["step_time_s"] is not None]
    assert [r["step"] for r in timed] == [2, 3, 4]
    for r in timed:  # the step's 32 examples, not its first micro-batch's 8
        assert r["samples_per_s"] == pytest.approx(32 / r["step_time_s"], rel=1e-9)
