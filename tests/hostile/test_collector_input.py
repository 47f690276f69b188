"""Hostile values handed to the collector: each is refused at the door with a
``ConfigError`` naming it, or stored in a documented form; none poisons the store or
takes good rows with it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import analysis
from collector import Collector, ConfigError
from store.records import Rows
from store.schema import EventKind, Stream
from store.writer import Writer
from telemetry.cli import main
from tests.collector.read_back import read_stream

SURROGATE = os.fsdecode(b"run-\xff")  # what a non-UTF-8 path decodes to: 'run-\udcff'


def _train(tel: Collector, model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        loss = model(torch.ones(4, 2)).pow(2).mean()
        loss.backward()
        opt.step()
        tel.log({"loss": loss, "acc": 0.5}, split="train")


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _events(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    table = read_stream(run_dir, Stream.EVENTS)
    return [
        (kind, json.loads(payload))
        for kind, payload in zip(
            table["kind"].to_pylist(), table["payload"].to_pylist(), strict=True
        )
    ]


def test_lone_surrogates_in_name_config_and_metrics_are_stored_escaped_and_every_verb_reads_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, opt = _model()
    config = {"data": SURROGATE, f"key{SURROGATE}": 1, "nested": [{"p": SURROGATE}]}
    caplog.set_level(logging.WARNING)
    with Collector(tmp_path, name=SURROGATE, config=config, model=model, optimizer=opt) as tel:
        _train(tel, model, opt, 3)
        tel.log({f"bad{SURROGATE}": 1.0, "fine": 2.0}, split=f"val{SURROGATE}")
    assert "not valid Unicode" in caplog.text
    scalars = read_stream(tel.run_dir, Stream.SCALARS)
    names = set(scalars["name"].to_pylist())
    assert {"loss", "acc", "fine", "bad" + "run-\\udcff"} <= names  # no good row lost
    assert "val" + "run-\\udcff" in scalars["split"].to_pylist()
    started = dict(_events(tel.run_dir))[EventKind.RUN_STARTED.value]
    assert started["name"] == "run-\\udcff"
    assert started["config"]["data"] == "run-\\udcff"
    assert started["config"]["keyrun-\\udcff"] == 1
    assert started["config"]["nested"] == [{"p": "run-\\udcff"}]

    with analysis.open_store(tmp_path) as store:
        runs = store.sql("SELECT name, status FROM runs")
    assert runs.rows() == [("run-\\udcff", "finished")]
    for args in (["runs", str(tmp_path)], ["analyze", str(tmp_path), "--format", "json"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


@pytest.mark.parametrize("what", ["step", "epoch"])
def test_a_step_or_epoch_beyond_int64_is_refused_and_the_run_still_ends_finished(
    tmp_path: Path, what: str
) -> None:
    with Collector(tmp_path, name="big") as tel:
        tel.log({"a": 1.0}, step=1)
        with pytest.raises(ConfigError, match=rf"{what} must be an int from 0 to 2\*\*63 - 1"):
            tel.log({"a": 2.0}, **{what: 2**63})
        with pytest.raises(ConfigError, match="an int of 1329 bits"):  # never a huge repr
            tel.log({"a": 2.0}, **{what: 10**400})
        tel.log({"a": 3.0}, step=2**63 - 1)  # the largest that fits is fine
    assert read_stream(tel.run_dir, Stream.SCALARS)["value"].to_pylist() == [1.0, 3.0]
    assert _events(tel.run_dir)[-1][0] == EventKind.RUN_FINISHED.value
    with analysis.open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs").item() == "finished"


def test_a_start_step_beyond_int64_is_refused_before_a_run_directory_exists(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="start_step"):
        Collector(tmp_path, name="x", start_step=2**63)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), Fraction(10**400)], ids=["int", "negative", "fraction"]
)
def test_a_number_beyond_float64_is_a_config_error_naming_the_metric(
    tmp_path: Path, value: Any
) -> None:
    with Collector(tmp_path, name="huge") as tel:
        with pytest.raises(ConfigError, match="metric 'big' .* beyond the float64 range"):
            tel.log({"ok": 1.0, "big": value}, step=1)
        tel.log({"ok": 2.0}, step=2)
    assert read_stream(tel.run_dir, Stream.SCALARS)["value"].to_pylist() == [2.0]


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def test_config_values_json_cannot_hold_are_stored_as_text(tmp_path: Path) -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        inner.append([])
        inner = inner[0]
    config = {"obj": _Unprintable(), "frac": Fraction(10**400), "deep": deep, "big": 10**400}
    with Collector(tmp_path, name="cfg", config=config) as tel:
        tel.log({"a": 1.0}, step=1)
    stored = dict(_events(tel.run_dir))[EventKind.RUN_STARTED.value]["config"]
    assert stored["obj"] == "<unrepresentable _Unprintable>"
    assert stored["frac"].startswith("Fraction(")
    assert stored["big"] == 10**400  # JSON holds any integer
    depth, node = 0, stored["deep"]
    while isinstance(node, list) and node:
        depth, node = depth + 1, node[0]
    assert isinstance(node, str) and depth < 100  # kept as structure, then as text
    with analysis.open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs").item() == "finished"


@pytest.mark.parametrize("config", [[1, 2], _BrokenMapping()], ids=["not-a-mapping", "broken"])
def test_a_rejected_config_leaves_no_run_directory(tmp_path: Path, config: Any) -> None:
    with pytest.raises((ConfigError, RuntimeError)):
        Collector(tmp_path, name="rejected", config=config)
    assert list(tmp_path.iterdir()) == []


def _rows(stream: Stream, step: int, **columns: list[Any]) -> Rows:
    return Rows(stream, step=step, epoch=None, wall_time=1.0, columns=columns)


def test_a_bad_batch_is_dropped_alone_and_recorded_even_at_the_final_flush(
    tmp_path: Path,
) -> None:
    writer = Writer(tmp_path, "run", flush_every_s=60)  # one flush: the final one
    writer.put(_rows(Stream.SCALARS, 1, name=["a", "b"], split=["train"] * 2, value=[1.0, 2.0]))
    writer.put(_rows(Stream.SCALARS, 2**63, name=["bad"], split=["train"], value=[3.0]))
    writer.put(_rows(Stream.SCALARS, 2, name=["c"], split=["train"], value=[4.0]))
    ending = {"kind": [EventKind.RUN_FINISHED.value], "payload": ["{}"]}
    writer.put(_rows(Stream.EVENTS, 2, **ending), essential=True)
    writer.close()
    assert writer.rows_dropped == 1
    run_dir = tmp_path / "run"
    scalars = read_stream(run_dir, Stream.SCALARS)
    assert scalars["name"].to_pylist() == ["a", "b", "c"]  # the good rows beside it kept
    assert pc.max(scalars["seq"]).as_py() < read_stream(run_dir, Stream.EVENTS)["seq"][0].as_py()
    events = _events(run_dir)
    assert [kind for kind, _ in events] == ["dropped", "run_finished"]  # the ending stays last
    assert events[0][1]["rows"] == 1
    assert events[0][1]["reasons"] == {"OverflowError": 1}


def test_rows_a_failing_disk_drops_at_the_final_flush_are_recorded(tmp_path: Path) -> None:
    from store.writer import _publish

    def scalars_fail(table: Any, directory: Path, filename: str) -> object:
        if directory.name == Stream.SCALARS.value:
            raise OSError(28, "No space left on device")
        return _publish(table, directory, filename)

    writer = Writer(tmp_path, "run", flush_every_s=60, sink=scalars_fail)
    writer.put(_rows(Stream.SCALARS, 1, name=["a"] * 5, split=["train"] * 5, value=[1.0] * 5))
    ending = {"kind": [EventKind.RUN_FINISHED.value], "payload": ["{}"]}
    writer.put(_rows(Stream.EVENTS, 1, **ending), essential=True)
    writer.close()
    events = _events(tmp_path / "run")
    assert [kind for kind, _ in events] == ["dropped", "run_finished"]
    assert events[0][1]["rows"] == 5
    assert events[0][1]["reasons"] == {"OSError": 5}
    assert "No space left" in events[0][1]["last_error"]


def test_a_failure_message_with_a_lone_surrogate_is_recorded_readably(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), Collector(tmp_path, name="failing") as tel:
        raise FileNotFoundError(f"no such file: {SURROGATE}")
    kind, payload = _events(tel.run_dir)[-1]
    assert kind == EventKind.RUN_FAILED.value
    assert payload["message"] == "no such file: run-\\udcff"
    with analysis.open_store(tmp_path) as store:
        assert store.sql("SELECT status FROM runs").item() == "failed"
