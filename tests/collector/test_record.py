"""Collector.record(): whole rows of any stream, at a given step and wall time."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from collector import Collector, ConfigError
from integrations.tensorboard import SummaryWriter
from store.schema import Stream

from .read_back import read_stream


@pytest.fixture
def open_collectors() -> Iterator[list[Collector]]:
    made: list[Collector] = []
    yield made
    for tel in made:
        tel.close()


@pytest.fixture
def make(tmp_path: Path, open_collectors: list[Collector]) -> Callable[..., Collector]:
    def make(*args: Any, **kwargs: Any) -> Collector:
        tel = Collector(tmp_path / "runs", *args, **kwargs)
        open_collectors.append(tel)
        return tel

    return make


def _scalars(run_dir: Path) -> list[dict[str, Any]]:
    return read_stream(run_dir, Stream.SCALARS).to_pylist()


def _one(name: str, value: float) -> dict[str, list[Any]]:
    return {"name": [name], "split": ["val"], "value": [value]}


def test_rows_land_with_the_given_step_wall_time_and_the_current_epoch(
    make: Callable[..., Collector],
) -> None:
    tel = make()
    tel.set_epoch(2)
    tel.log({"loss": 1.0}, step=3)
    tel.record(Stream.SCALARS, _one("acc", 0.5), step=5, wall_time=1_700_000_000.25)
    before = time.time()
    tel.record("scalars", {"name": ["f1", "auc"], "value": [0.25, 0.75]})  # by name, defaults
    after = time.time()
    tel.close()
    rows = {r["name"]: r for r in _scalars(tel.run_dir)}
    acc, f1, auc = rows["acc"], rows["f1"], rows["auc"]
    assert (acc["step"], acc["epoch"], acc["split"], acc["value"]) == (5, 2, "val", 0.5)
    assert acc["wall_time"].timestamp() == 1_700_000_000.25
    # Defaults: the current step (advanced to 5 by the record above: no optimizer), now.
    assert (f1["step"], f1["epoch"], f1["split"], f1["value"]) == (5, 2, None, 0.25)
    assert auc["value"] == 0.75
    assert before - 1e-3 <= f1["wall_time"].timestamp() <= after + 1e-3


def test_without_an_optimizer_a_later_step_advances_the_collector_like_log_does(
    make: Callable[..., Collector],
) -> None:
    tel = make()
    tel.record(Stream.SCALARS, _one("a", 1.0), step=7)
    assert tel.step == 7
    tel.record(Stream.SCALARS, _one("b", 2.0), step=4)  # an earlier step labels its rows only
    assert tel.step == 7
    tel.log({"c": 3.0})
    tel.close()
    assert {r["name"]: r["step"] for r in _scalars(tel.run_dir)} == {"a": 7, "b": 4, "c": 7}


def test_with_an_optimizer_its_steps_count_and_step_only_labels_the_rows(
    make: Callable[..., Collector],
) -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tel = make(model=model, optimizer=opt, stats_every=0, activations_every=0)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    tel.record(Stream.SCALARS, _one("acc", 0.5), step=100)
    assert tel.step == 1
    tel.record(Stream.SCALARS, _one("f1", 0.25))
    tel.close()
    steps = {r["name"]: r["step"] for r in _scalars(tel.run_dir) if r["name"] != "lr"}
    assert steps == {"acc": 100, "f1": 1}


def test_any_stream_takes_rows_and_events_read_back(make: Callable[..., Collector]) -> None:
    tel = make()
    payload = json.dumps({"tag": "note", "text": "hello"})
    tel.record(Stream.EVENTS, {"kind": ["note"], "payload": [payload]}, step=2, essential=True)
    tel.record(Stream.SYSTEM, {"step_time_s": [0.5], "batch_size": [32]}, step=2)
    tel.close()
    notes = [r for r in read_stream(tel.run_dir, Stream.EVENTS).to_pylist() if r["kind"] == "note"]
    assert [(r["step"], json.loads(r["payload"])) for r in notes] == [
        (2, {"tag": "note", "text": "hello"})
    ]
    [system] = read_stream(tel.run_dir, Stream.SYSTEM).to_pylist()
    assert (system["step"], system["step_time_s"], system["batch_size"]) == (2, 0.5, 32)
    assert system["max_memory_bytes"] is None  # a column left out is null


@pytest.mark.parametrize(
    ("stream", "columns", "step", "wall_time", "message"),
    [
        ("scalar", _one("x", 1.0), None, None, "no stream 'scalar'"),
        (Stream.SCALARS, {"name": ["x"], "valeu": [1.0]}, None, None, "no column 'valeu'"),
        (Stream.SCALARS, {"name": ["x"], "step": [3]}, None, None, "record()'s arguments"),
        (Stream.SCALARS, {"name": ["x", "y"], "value": [1.0]}, None, None, "'value' has 1"),
        (Stream.SCALARS, {"name": "loss", "value": [1.0]}, None, None, "column 'name' must be"),
        (Stream.SCALARS, [("name", ["x"])], None, None, "takes a mapping"),
        (Stream.SCALARS, _one("x", 1.0), -1, None, "step must be an int"),
        (Stream.SCALARS, _one("x", 1.0), True, None, "step must be an int"),
        (Stream.SCALARS, _one("x", 1.0), None, float("nan"), "wall_time must be seconds"),
        (Stream.SCALARS, _one("x", 1.0), None, 1e300, "wall_time must be seconds"),
    ],
)
def test_a_bad_stream_column_step_or_wall_time_is_refused_and_earlier_rows_survive(
    make: Callable[..., Collector],
    stream: Any,
    columns: Any,
    step: Any,
    wall_time: Any,
    message: str,
) -> None:
    tel = make()
    tel.record(Stream.SCALARS, _one("before", 1.0), step=1)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tel.record(stream, columns, step=step, wall_time=wall_time)
    tel.record(Stream.SCALARS, _one("after", 2.0), step=2)
    assert tel.step == 2  # the refused call moved nothing
    tel.close()
    assert [(r["name"], r["step"]) for r in _scalars(tel.run_dir)] == [
        ("before", 1),
        ("after", 2),
    ]
    assert tel.rows_dropped == 0


def test_an_unknown_column_is_named_with_the_columns_the_stream_has(
    make: Callable[..., Collector],
) -> None:
    tel = make()
    with pytest.raises(ConfigError) as refused:
        tel.record("tensors", {"param": ["w"], "kind": ["grad"], "l2": [1.0]})
    assert "'l2'" in str(refused.value) and "norm" in str(refused.value)


def test_a_closed_collector_ignores_rows_with_a_warning(
    make: Callable[..., Collector], caplog: pytest.LogCaptureFixture
) -> None:
    tel = make()
    tel.record(Stream.SCALARS, _one("kept", 1.0), step=1)
    tel.close()
    files = sorted(tel.run_dir.rglob("*"))
    with caplog.at_level(logging.WARNING, logger="collector.collector"):
        tel.record(Stream.SCALARS, _one("late", 2.0), step=9)
    assert "closed" in caplog.text and "record()" in caplog.text
    assert tel.step == 1
    assert sorted(tel.run_dir.rglob("*")) == files
    assert [r["name"] for r in _scalars(tel.run_dir)] == ["kept"]
    with pytest.raises(ConfigError):  # still checked: a bug in the caller is one when closed
        tel.record("nope", {})


def test_the_tensorboard_drop_in_is_a_plain_collector(tmp_path: Path) -> None:
    model = nn.Linear(3, 1)
    with SummaryWriter(root=tmp_path, name="tb", model=model) as writer:
        assert type(writer.collector) is Collector
        assert writer.collector.model is model
        writer.add_scalar("Loss/train", 0.5, 3)
        writer.add_scalar("Loss/train", 0.25)  # no optimizer: the largest step so far
    rows = [(r["name"], r["split"], r["step"]) for r in _scalars(writer.collector.run_dir)]
    assert rows == [("loss", "train", 3), ("loss", "train", 3)]
