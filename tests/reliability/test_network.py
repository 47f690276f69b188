"""Security: the collector never opens a network connection, not even to resolve a name."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import analysis
from collector import Collector


class NetworkUsed(AssertionError):
    pass


def test_a_training_run_with_every_feature_touches_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            calls.append(what)
            raise NetworkUsed(f"the collector called {what}{args!r}")

        return blocked

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname", "socketpair"):
        monkeypatch.setattr(socket, name, refuse(f"socket.{name}"))
    with pytest.raises(NetworkUsed):
        socket.create_connection(("example.com", 80))  # the trap works
    calls.clear()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with Collector(
        tmp_path,
        name="offline",
        config={"lr": 1e-3},
        model=model,
        optimizer=opt,
        activations_every=2,
        samples_every=2,
        flush_every_s=0.05,
        heartbeat_every_s=0.05,
    ) as tel:
        for _ in range(6):
            opt.zero_grad()
            loss = model(torch.randn(4, 1, 6, 6)).pow(2).mean()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
            tel.flush()
    assert calls == []
    assert tel.rows_dropped == 0
    with analysis.open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs")["status"].to_list() == ["finished"]
