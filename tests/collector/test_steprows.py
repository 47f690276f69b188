"""Every step's rows kept and handed over in batches (``collector.steprows``)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from collector import Collector
from store.schema import Stream

from .read_back import read_stream


def steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, tel: Collector) -> None:
    for _ in range(n):
        opt.zero_grad()
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        opt.step()
        tel.log({"loss": loss}, split="train")


def test_the_writer_takes_kept_rows_on_its_own_cadence_while_the_loop_is_busy(
    tmp_path: Path,
) -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tel = Collector(tmp_path, model=model, optimizer=opt, stats_every=0, flush_every_s=0.2)
    steps(model, opt, 3, tel)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a long validation: no step, no log, no flush
        system = read_stream(tel.run_dir, Stream.SYSTEM).to_pylist()
        if len(system) == 3:
            break
        time.sleep(0.05)
    assert [r["step"] for r in system] == [1, 2, 3]
    assert all(r["grad_norm"] > 0 and r["batch_size"] == 4 for r in system)
    assert system[-1]["max_memory_bytes"] > 0  # read once per hand-over, for its last row
    scalars = read_stream(tel.run_dir, Stream.SCALARS).to_pylist()
    assert sorted((r["name"], r["step"]) for r in scalars) == [
        ("loss", 1),
        ("loss", 2),
        ("loss", 3),
        ("lr", 1),
        ("lr", 2),
        ("lr", 3),
    ]
    times = [r["wall_time"] for r in system]
    assert times == sorted(times) and len(set(times)) == 3  # each row its own time
    tel.close()


def test_many_steps_keep_their_own_step_epoch_and_order(tmp_path: Path) -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Collector(tmp_path, model=model, optimizer=opt, stats_every=0) as tel:
        for epoch in range(3):
            tel.set_epoch(epoch)
            steps(model, opt, 50, tel)
        tel.record(Stream.SCALARS, {"name": ["note"], "value": [1.0]})
    scalars = sorted(read_stream(tel.run_dir, Stream.SCALARS).to_pylist(), key=lambda r: r["seq"])
    loss = [(r["step"], r["epoch"]) for r in scalars if r["name"] == "loss"]
    assert loss == [(s, (s - 1) // 50) for s in range(1, 151)]
    assert scalars[-1]["name"] == "note", "record() after log(): its rows stay after"
    system = read_stream(tel.run_dir, Stream.SYSTEM).to_pylist()
    assert sorted(r["step"] for r in system) == list(range(1, 151))
