"""The Collector facade on tiny models: lifecycle, hooks, statistics, log() and validation."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import collector
from collector import Collector, ConfigError
from store.schema import Stream

from .read_back import read_stream

PARAMS = ["0.weight", "0.bias", "2.weight", "2.bias"]


def tiny_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.fixture
def model() -> nn.Sequential:
    return tiny_model()


@pytest.fixture
def opt(model: nn.Sequential) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)


@pytest.fixture
def open_collectors() -> Iterator[list[Collector]]:
    """Collectors a test opens; closed at teardown even when the test fails."""
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


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    x, y = batch
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


def events(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = sorted(read_stream(run_dir, Stream.EVENTS).to_pylist(), key=lambda r: r["seq"])
    return [(r["kind"], json.loads(r["payload"])) for r in rows]


def rows(run_dir: Path, stream: Stream) -> list[dict[str, Any]]:
    return sorted(read_stream(run_dir, stream).to_pylist(), key=lambda r: r["seq"])


def scalar(run_dir: Path, name: str) -> list[tuple[int, str | None, float]]:
    return [
        (r["step"], r["split"], r["value"])
        for r in rows(run_dir, Stream.SCALARS)
        if r["name"] == name
    ]


# -- lifecycle -----------------------------------------------------------------------------


def test_run_dir_and_run_started_event_describe_the_run(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, tmp_path: Path
) -> None:
    config = {"lr": 0.1, "layers": [4, 8, 2], "note": "tiny"}
    tel = make("tiny-mlp", config, model, opt)
    assert tel.run_dir == tmp_path / "runs" / tel.run_id
    assert tel.run_dir.is_dir() and tel.run_id.startswith("tiny-mlp-")
    tel.close()
    (kind, payload), *_ = events(tel.run_dir)
    assert kind == "run_started"
    assert payload["config"] == config
    assert payload["torch"] == torch.__version__
    assert payload["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert payload["trainable_parameters"] == 58
    assert payload["watched_parameters"] == 4
    assert payload["schema_version"] == collector.SCHEMA_VERSION
    assert (payload["name"], payload["model"], payload["optimizer"]) == (
        "tiny-mlp", "Sequential", "SGD",
    )  # fmt: skip


def test_clean_exit_of_a_with_block_writes_run_finished(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    with make("ok", model=model, optimizer=opt) as tel:
        train_step(model, opt, batch)
    kinds = [k for k, _ in events(tel.run_dir)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "run_failed" not in kinds
    payload = events(tel.run_dir)[-1][1]
    assert payload["steps"] == 1 and payload["rows_dropped"] == 0 and payload["hook_failures"] == {}


def test_with_block_that_raises_writes_run_failed_and_the_exception_propagates(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make("boom", model=model, optimizer=opt)
    with pytest.raises(RuntimeError, match="CUDA out of memory, pretend"), tel:
        train_step(model, opt, batch)
        raise RuntimeError("CUDA out of memory, pretend")
    kinds = [k for k, _ in events(tel.run_dir)]
    assert "run_finished" not in kinds
    kind, payload = events(tel.run_dir)[-1]
    assert kind == "run_failed"
    assert payload["type"] == "RuntimeError"
    assert payload["message"] == "CUDA out of memory, pretend"
    assert payload["steps"] == 1


def hook_counts(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, int, int, int]:
    return (
        len(opt._optimizer_step_pre_hooks),
        len(opt._optimizer_step_post_hooks),
        sum(len(m._forward_pre_hooks) for m in model.modules()),
        sum(len(m._forward_hooks) for m in model.modules()),
    )


def test_close_removes_every_hook_it_added_and_is_idempotent(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    users = [opt.register_step_post_hook(lambda *a: None)]  # the user's own hook stays
    users.append(model.register_forward_pre_hook(lambda *a: None))
    before = hook_counts(model, opt)
    tel = make(model=model, optimizer=opt)
    during = hook_counts(model, opt)
    assert during[:2] == (before[0] + 1, before[1] + 1)
    assert during[2] > before[2] and during[3] > before[3]
    train_step(model, opt, batch)
    tel.close()
    assert hook_counts(model, opt) == before
    tel.close()
    assert hook_counts(model, opt) == before
    assert [k for k, _ in events(tel.run_dir)].count("run_finished") == 1
    assert not [
        t for t in threading.enumerate() if t.name.startswith(f"telemetry-writer-{tel.run_id}")
    ]
    for handle in users:
        handle.remove()


def test_after_close_training_and_log_leave_the_run_alone(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tel = make(model=model, optimizer=opt)
    train_step(model, opt, batch)
    tel.close()
    files = sorted(tel.run_dir.rglob("*"))
    train_step(model, opt, batch)
    with caplog.at_level(logging.WARNING, logger="collector.collector"):
        tel.log({"loss": 1.0})
    assert tel.step == 1
    assert "closed" in caplog.text
    assert sorted(tel.run_dir.rglob("*")) == files


# -- steps and statistics -------------------------------------------------------------------


def test_steps_count_optimizer_steps_and_tensor_rows_cover_every_parameter_and_kind(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make(model=model, optimizer=opt)
    assert tel.step == 0
    for _ in range(3):
        model(batch[0])  # extra forwards are not steps
        train_step(model, opt, batch)
    assert tel.step == 3
    tel.close()
    got = sorted((r["step"], r["kind"], r["param"]) for r in rows(tel.run_dir, Stream.TENSORS))
    want = sorted(
        (step, kind, param)
        for step in (1, 2, 3)
        for kind in ("grad", "weight", "update")
        for param in PARAMS
    )
    assert got == want


def test_recorded_update_weight_and_grad_stats_equal_the_actual_tensors(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make(model=model, optimizer=opt)
    train_step(model, opt, batch)  # momentum buffers exist from step 2 on
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, opt, batch)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    tel.close()

    recorded = {
        (r["kind"], r["param"]): r for r in rows(tel.run_dir, Stream.TENSORS) if r["step"] == 2
    }
    for name in PARAMS:
        change = after[name] - before[name]
        assert change.abs().max() > 0
        for kind, tensor in (("update", change), ("weight", after[name]), ("grad", grads[name])):
            row = recorded[(kind, name)]
            assert row["norm"] == pytest.approx(float(torch.linalg.vector_norm(tensor)), rel=1e-5)
            assert row["mean"] == pytest.approx(float(tensor.mean()), rel=1e-4, abs=1e-8)
            assert row["min"] == pytest.approx(float(tensor.min()), rel=1e-6)
            assert row["max"] == pytest.approx(float(tensor.max()), rel=1e-6)
            assert row["numel"] == tensor.numel() and row["nonfinite"] == 0


def test_stats_every_two_samples_steps_one_three_and_five(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make(model=model, optimizer=opt, stats_every=2)
    for _ in range(6):
        train_step(model, opt, batch)
    tel.close()
    assert {r["step"] for r in rows(tel.run_dir, Stream.TENSORS)} == {1, 3, 5}
    assert [s for s, _, _ in scalar(tel.run_dir, "lr")] == [1, 2, 3, 4, 5, 6]


def test_stats_every_zero_records_no_tensor_rows(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make(model=model, optimizer=opt, stats_every=0)
    train_step(model, opt, batch)
    tel.close()
    assert rows(tel.run_dir, Stream.TENSORS) == []


@pytest.mark.parametrize(
    ("include", "exclude", "watched"),
    [
        (["0.*"], None, ["0.weight", "0.bias"]),
        (None, ["*.bias"], ["0.weight", "2.weight"]),
        (["2.*"], ["*.bias"], ["2.weight"]),
        (["*.weight", "*.bias"], ["0.*"], ["2.weight", "2.bias"]),
        (["nothing"], None, []),
    ],
)
def test_include_and_exclude_patterns_select_the_watched_parameters(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    include: list[str] | None,
    exclude: list[str] | None,
    watched: list[str],
) -> None:
    tel = make(model=model, optimizer=opt, include=include, exclude=exclude)
    train_step(model, opt, batch)
    tel.close()
    assert {r["param"] for r in rows(tel.run_dir, Stream.TENSORS)} == set(watched)
    assert events(tel.run_dir)[0][1]["watched_parameters"] == len(watched)


def test_a_bare_string_pattern_is_refused_or_read_as_one_pattern(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    try:
        tel = make(model=model, optimizer=opt, exclude="*.bias")
    except ConfigError:
        return
    train_step(model, opt, batch)
    tel.close()
    assert {r["param"] for r in rows(tel.run_dir, Stream.TENSORS)} == {"0.weight", "2.weight"}


def test_a_non_iterable_pattern_raises_config_error_and_creates_nothing(
    tmp_path: Path, model: nn.Sequential
) -> None:
    root = tmp_path / "runs"
    threads = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigError, match="include"):
        Collector(root, model=model, include=3)
    assert not root.exists() or list(root.iterdir()) == []
    new_threads = {t.name for t in threading.enumerate()} - threads
    assert not [name for name in new_threads if name.startswith("telemetry-writer-")]


def test_learning_rate_of_each_param_group_is_logged_every_step(
    make: Callable[..., Collector], model: nn.Sequential, batch: Any
) -> None:
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}],
        lr=0.1,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    tel = make(model=model, optimizer=opt)
    for _ in range(3):
        train_step(model, opt, batch)
        sched.step()
    tel.close()
    assert scalar(tel.run_dir, "lr") == [(1, "train", 0.1), (2, "train", 0.05), (3, "train", 0.025)]
    assert scalar(tel.run_dir, "lr.group1") == [
        (1, "train", 0.01), (2, "train", 0.005), (3, "train", 0.0025),
    ]  # fmt: skip


# -- log() -------------------------------------------------------------------------------------


def test_log_splits_name_slash_split_unless_a_split_is_given(
    make: Callable[..., Collector],
) -> None:
    tel = make()
    tel.log({"loss/val": 1.0, "acc": 0.5, "a/b/c": 2.0}, step=1)
    tel.log({"loss/val": 3.0}, split="x", step=2)
    tel.close()
    got = [
        (r["name"], r["split"], r["value"], r["step"]) for r in rows(tel.run_dir, Stream.SCALARS)
    ]
    assert got == [
        ("loss", "val", 1.0, 1),
        ("acc", None, 0.5, 1),
        ("a/b", "c", 2.0, 1),
        ("loss/val", "x", 3.0, 2),
    ]


def test_log_accepts_one_element_tensors_and_plain_numbers(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    tel = make(model=model, optimizer=opt)
    loss = train_step(model, opt, batch)  # requires grad
    tel.log(
        {
            "loss": loss,
            "acc": torch.tensor([0.25]),
            "half": torch.tensor([[0.5]], dtype=torch.bfloat16),
            "count": torch.tensor(7),
            "n": 3,
        },
        split="train",
        epoch=2,
    )
    tel.close()
    logged = {
        r["name"]: (r["value"], r["step"], r["epoch"])
        for r in rows(tel.run_dir, Stream.SCALARS)
        if not r["name"].startswith("lr")
    }
    assert logged == {
        "loss": (pytest.approx(float(loss.detach())), 1, 2),
        "acc": (0.25, 1, 2),
        "half": (0.5, 1, 2),
        "count": (7.0, 1, 2),
        "n": (3.0, 1, 2),
    }
    assert tel.epoch == 2


def test_non_finite_values_are_kept_as_they_are(make: Callable[..., Collector]) -> None:
    tel = make()
    tel.log({"loss": torch.tensor(math.nan), "plain": math.nan, "up": torch.tensor(math.inf)})
    tel.log({"down": -math.inf})
    tel.close()
    table = read_stream(tel.run_dir, Stream.SCALARS)
    assert table.column("value").null_count == 0
    values = dict(zip(table["name"].to_pylist(), table["value"].to_pylist(), strict=True))
    assert math.isnan(values["loss"]) and math.isnan(values["plain"])
    assert values["up"] == math.inf and values["down"] == -math.inf


def test_log_without_an_optimizer_takes_the_step_it_is_given(
    make: Callable[..., Collector],
) -> None:
    tel = make()
    tel.log({"loss": 1.0}, step=5)
    tel.log({"loss": 0.5})
    assert tel.step == 5
    tel.close()
    assert [s for s, _, _ in scalar(tel.run_dir, "loss")] == [5, 5]


def test_log_accepts_numpy_scalars(make: Callable[..., Collector]) -> None:
    np = pytest.importorskip("numpy")
    tel = make()
    tel.log({"acc": np.float32(0.5), "correct": np.int64(3)}, step=1)
    tel.close()
    assert {r["name"]: r["value"] for r in rows(tel.run_dir, Stream.SCALARS)} == {
        "acc": 0.5,
        "correct": 3.0,
    }


BAD_LOG_CALLS: list[tuple[str, Callable[[Collector], object], str]] = [
    ("non-mapping", lambda t: t.log([("loss", 1.0)]), "mapping"),
    ("string value", lambda t: t.log({"loss": "0.5"}), "'loss'.*str"),
    ("none value", lambda t: t.log({"loss": None}), "'loss'.*NoneType"),
    ("bool value", lambda t: t.log({"ok": True}), "'ok'.*bool"),
    ("multi-element tensor", lambda t: t.log({"loss": torch.ones(2, 3)}), r"'loss'.*\(2, 3\)"),
    ("empty split", lambda t: t.log({"loss": 1.0}, split=""), "split"),
    ("non-string split", lambda t: t.log({"loss": 1.0}, split=3), "split"),
    ("negative step", lambda t: t.log({"loss": 1.0}, step=-1), "step.*-1"),
    ("float step", lambda t: t.log({"loss": 1.0}, step=1.5), "step.*1.5"),
    ("negative epoch", lambda t: t.log({"loss": 1.0}, epoch=-2), "epoch.*-2"),
    ("empty name", lambda t: t.log({"": 1.0}), "name"),
    ("non-string name", lambda t: t.log({3: 1.0}), "name"),
    ("empty split in key", lambda t: t.log({"loss/": 1.0}), "'loss/'"),
    ("empty name in key", lambda t: t.log({"/val": 1.0}), "'/val'"),
    ("bad value after good ones", lambda t: t.log({"a": 1.0, "b": [2.0]}), "'b'.*list"),
    ("complex value", lambda t: t.log({"z": 1 + 2j}), "'z'.*complex"),
    ("complex tensor", lambda t: t.log({"z": torch.tensor(1 + 2j)}), "'z'.*complex"),
    ("bool tensor", lambda t: t.log({"ok": torch.tensor(True)}), "'ok'.*bool"),
]


@pytest.mark.parametrize(
    ("call", "message"), [(c, m) for _, c, m in BAD_LOG_CALLS], ids=[i for i, _, _ in BAD_LOG_CALLS]
)
def test_bad_log_input_raises_config_error_naming_the_problem_and_leaves_the_store_intact(
    make: Callable[..., Collector], call: Callable[[Collector], object], message: str
) -> None:
    tel = make()
    tel.log({"good": 1.0}, step=1)
    with pytest.raises(ConfigError, match=message):
        call(tel)
    tel.log({"good": 2.0}, step=2)
    tel.close()
    assert scalar(tel.run_dir, "good") == [(1, None, 1.0), (2, None, 2.0)]
    assert [r["name"] for r in rows(tel.run_dir, Stream.SCALARS)] == ["good", "good"]
    assert tel.rows_dropped == 0
    assert events(tel.run_dir)[-1][0] == "run_finished"


BAD_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("negative stats_every", {"stats_every": -1}, "stats_every.*-1"),
    ("float stats_every", {"stats_every": 1.5}, "stats_every.*1.5"),
    ("bool stats_every", {"stats_every": True}, "stats_every.*True"),
    ("config not a mapping", {"config": [("lr", 0.1)]}, "config must be a mapping.*list"),
    ("model not a module", {"model": "resnet"}, "model must be a torch.nn.Module.*str"),
    ("optimizer not an optimizer", {"optimizer": object()}, "optimizer.*object"),
    ("name not a string", {"name": 3}, "name.*3"),
    ("zero flush interval", {"flush_every_s": 0}, "flush_every_s.*0"),
    ("negative heartbeat", {"heartbeat_every_s": -1.0}, "heartbeat_every_s"),
    ("negative nan_check", {"nan_check": -2}, "nan_check.*-2"),
    ("string nan_check", {"nan_check": "yes"}, "nan_check.*'yes'"),
    ("float nan_check", {"nan_check": 0.5}, "nan_check.*0.5"),
]


@pytest.mark.parametrize(
    ("kwargs", "message"), [(k, m) for _, k, m in BAD_ARGS], ids=[i for i, _, _ in BAD_ARGS]
)
def test_bad_constructor_argument_raises_config_error_and_creates_nothing(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    (root / "earlier-run").mkdir()
    threads = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigError, match=message):
        Collector(root, **kwargs)
    assert [p.name for p in root.iterdir()] == ["earlier-run"]
    assert not [
        t
        for t in threading.enumerate()
        if t.name.startswith("telemetry-writer-") and t.name not in threads
    ]


def test_config_error_is_a_value_error_and_a_telemetry_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, collector.TelemetryError)


# -- hooks never raise into training ------------------------------------------------------------


def test_a_failing_hook_is_counted_and_training_goes_on(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from collector import stats

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("stats are broken")

    tel = make(model=model, optimizer=opt, activations_every=0)
    monkeypatch.setattr(stats, "reduce", broken)
    with caplog.at_level(logging.WARNING, logger="collector.guard"):
        for _ in range(3):
            train_step(model, opt, batch)
    assert tel.step == 3
    assert len([r for r in caplog.records if r.name == "collector.guard"]) == 1
    tel.close()
    # The gradients are reduced before the step (the backward ran before it; see
    # collector.params): the failing hook is the pre-step one, every step, and the run
    # still ends.
    assert events(tel.run_dir)[-1][1]["hook_failures"] == {"optimizer_step_pre": 3}
    lr_steps = [r["step"] for r in rows(tel.run_dir, Stream.SCALARS) if r["name"] == "lr"]
    assert lr_steps == [1, 2, 3], "the step's plain rows survive a failing statistic"


def test_a_statistic_failing_after_the_step_keeps_the_steps_lr_and_timing(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector import stats

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the transfer is broken")

    tel = make(model=model, optimizer=opt, activations_every=0)
    monkeypatch.setattr(stats, "to_host", broken)
    for _ in range(3):
        train_step(model, opt, batch)
    tel.close()
    assert events(tel.run_dir)[-1][1]["hook_failures"] == {"optimizer_step_post": 3}
    lr_steps = [r["step"] for r in rows(tel.run_dir, Stream.SCALARS) if r["name"] == "lr"]
    assert lr_steps == [1, 2, 3]
    assert rows(tel.run_dir, Stream.TENSORS) == []
    assert events(tel.run_dir)[-1][0] == "run_finished"


# -- timing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("evaluation", ["eval_mode", "no_grad"])
def test_system_rows_split_step_time_and_skip_steps_with_an_evaluation_forward(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    evaluation: str,
) -> None:
    tel = make(model=model, optimizer=opt)
    for step in range(1, 6):
        if step == 3:  # between steps 2 and 3: validation
            if evaluation == "eval_mode":
                model.eval()
                model(batch[0])
                model.train()
            else:
                with torch.no_grad():
                    model(batch[0])
        train_step(model, opt, batch)
    tel.close()
    every = rows(tel.run_dir, Stream.SYSTEM)
    assert [r["step"] for r in every] == [1, 2, 3, 4, 5]  # a row per step...
    system = [r for r in every if r["step_time_s"] is not None]
    # ...timed when it can be: step 1 has no previous step to be timed from; step 3
    # mixes validation in.
    assert [r["step"] for r in system] == [2, 4, 5]
    assert all(r["data_time_s"] is None for r in every if r["step"] in (1, 3))
    assert [r["batch_size"] for r in every] == [16] * 5
    for r in system:
        assert r["data_time_s"] >= 0 and r["compute_time_s"] >= 0
        # The rest of the step is the collector's own work after the previous step.
        assert r["data_time_s"] + r["compute_time_s"] <= r["step_time_s"]
        assert r["samples_per_s"] == pytest.approx(16 / r["step_time_s"], rel=1e-9)
    # The peak memory is read once per hand-over of the kept rows, for its last row
    # (collector.steprows): the last row has it, and a peak only grows.
    peaks = [r["max_memory_bytes"] for r in every if r["max_memory_bytes"] is not None]
    assert every[-1]["max_memory_bytes"] is not None
    assert peaks[0] > 0 and peaks == sorted(peaks)


def test_the_collectors_own_work_after_a_step_is_not_counted_as_data_wait(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector.params import ParamWatcher

    original = ParamWatcher.on_after_optimizer_step

    def slow(self: ParamWatcher) -> Any:
        time.sleep(0.03)  # expensive statistics, after every step
        return original(self)

    monkeypatch.setattr(ParamWatcher, "on_after_optimizer_step", slow)
    tel = make(model=model, optimizer=opt, stats_every=1)
    for _ in range(8):
        train_step(model, opt, batch)  # the next batch is ready at once
    tel.close()
    system = [r for r in rows(tel.run_dir, Stream.SYSTEM) if r["step_time_s"] is not None]
    waits = sorted(r["data_time_s"] for r in system)
    assert waits[len(waits) // 2] < 0.01, "the 30 ms of statistics read as a data wait"
    assert min(r["step_time_s"] for r in system) >= 0.03, "but the step time includes them"


# -- import cost ----------------------------------------------------------------------------------


def test_import_collector_does_not_import_torch_until_collector_is_touched() -> None:
    code = (
        "import sys\n"
        "import collector\n"
        "before = 'torch' in sys.modules\n"
        "collector.Collector\n"
        "print(before, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


# -- hostile input at the door ---------------------------------------------------------------


def test_config_values_that_are_not_json_are_stored_as_repr_with_one_warning(
    make: Callable[..., Collector], caplog: pytest.LogCaptureFixture
) -> None:
    np = pytest.importorskip("numpy")

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    config = {
        "lr": np.float32(0.5),
        "steps": np.int64(3),
        "data": Path("data/train"),
        "model": Opaque(),
        ("a", "b"): 1,
        7: "seven",
        "nested": {"fn": Opaque(), "ok": [1, None, True]},
        "cyclic": cyclic,
    }
    with caplog.at_level(logging.WARNING, logger="collector.collector"):
        tel = make(config=config)
    tel.close()
    warnings = [r for r in caplog.records if r.name == "collector.collector"]
    assert len(warnings) == 1
    for path in ("config.model", "config[('a', 'b')]", "config.nested.fn", "config.cyclic[1]"):
        assert path in warnings[0].getMessage()
    stored = events(tel.run_dir)[0][1]["config"]
    assert stored == {
        "lr": 0.5,
        "steps": 3,
        "data": "data/train",
        "model": "<Opaque>",
        "('a', 'b')": 1,
        "7": "seven",
        "nested": {"fn": "<Opaque>", "ok": [1, None, True]},
        "cyclic": [1, "[1, [...]]"],
    }


def test_a_root_that_is_a_file_is_a_store_error_and_the_file_is_untouched(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    root.write_text("not a directory")
    with pytest.raises(collector.StoreError, match="runs"):
        Collector(root)
    assert root.read_text() == "not a directory"
    with pytest.raises(collector.StoreError):
        Collector(root / "below")


@pytest.mark.parametrize(
    "hostile",
    ["../../escape", "a/b/../../..", "..", "/etc/passwd", "tab\tnew\nline\x00nul\x1b[31m"],
)
def test_hostile_run_names_stay_inside_the_root_and_are_stored_as_given(
    make: Callable[..., Collector], tmp_path: Path, hostile: str
) -> None:
    tel = make(hostile)
    tel.close()
    root = (tmp_path / "runs").resolve()
    assert tel.run_dir.resolve().parent == root
    assert [p.name for p in root.iterdir() if p.name != ".index"] == [tel.run_id]
    assert all(c.isalnum() or c in "._-" for c in tel.run_id)
    assert events(tel.run_dir)[0][1]["name"] == hostile


def test_a_second_collector_on_a_watched_model_or_optimizer_is_refused_until_close(
    make: Callable[..., Collector], model: nn.Sequential, opt: torch.optim.Optimizer, batch: Any
) -> None:
    first = make("first", model=model, optimizer=opt)
    other = tiny_model(1)
    with pytest.raises(ConfigError, match=f"model is already watched.*{first.run_id}"):
        make("second", model=model)
    with pytest.raises(ConfigError, match=f"optimizer is already watched.*{first.run_id}"):
        make("second", model=other, optimizer=opt)
    train_step(model, opt, batch)
    first.close()
    second = make("second", model=model, optimizer=opt)  # allowed once the first is closed
    train_step(model, opt, batch)
    second.close()
    assert [s for s, _, _ in scalar(first.run_dir, "lr")] == [1]
    assert [s for s, _, _ in scalar(second.run_dir, "lr")] == [1]


def test_rank_comes_from_the_rank_variable_of_launchers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    with Collector(root, name="ddp") as rank0:
        rank0.log({"loss": 1.0}, step=1)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="rank 1.*init_process_group.*resume="):
        Collector(root, name="ddp")  # cannot learn rank 0's run id on its own
    with Collector(root, resume=rank0.run_id) as rank1:
        rank1.log({"loss": 2.0}, step=1)
    assert (rank1.rank, rank1.attempt, rank1.run_id) == (1, 0, rank0.run_id)
    names = sorted(p.name for p in (rank0.run_dir / "scalars").iterdir())
    assert [n.split("-")[:2] for n in names] == [["0", "0"], ["1", "0"]]
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK='one'"):
        Collector(root)


def test_sigterm_handler_is_installed_only_over_the_default_and_removed_at_close(
    make: Callable[..., Collector],
) -> None:
    import signal

    from collector import shutdown

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    tel = make()
    assert signal.getsignal(signal.SIGTERM) is shutdown._on_sigterm
    tel.close()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def own(signum: int, frame: object) -> None: ...

    previous = signal.signal(signal.SIGTERM, own)
    try:
        tel = make()
        assert signal.getsignal(signal.SIGTERM) is own  # the program's own plan wins
        tel.close()
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)

    tel = make()  # ours installed; then a handler that chains to it (Lightning does)
    signal.signal(signal.SIGTERM, own)
    try:
        shutdown._on_sigterm(signal.SIGTERM, None)  # called as "the previous handler"
        assert repr(tel).endswith("open)")  # not closed, and we are still alive
    finally:
        signal.signal(signal.SIGTERM, shutdown._on_sigterm)
        tel.close()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# -- logged values on an accelerator ------------------------------------------------------


def test_values_on_an_accelerator_are_read_in_batches_with_the_step_of_their_call(
    make: Callable[..., Collector],
    model: nn.Sequential,
    opt: torch.optim.Optimizer,
    batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import collector.logged as module

    # No GPU here: CPU tensors stand in for device tensors (kept, read in batches).
    monkeypatch.setattr(module, "_kept_on_device", lambda t: True)
    reads: list[int] = []
    original = module.LogRows.read

    def counting(self: module.LogRows) -> float:
        reads.append(len(self.pending))
        return original(self)

    monkeypatch.setattr(module.LogRows, "read", counting)
    tel = make(model=model, optimizer=opt, stats_every=0, activations_every=0)
    expected = []
    for step in range(1, 41):
        loss = train_step(model, opt, batch)
        tel.log({"loss": loss, "lr_scale": 0.5}, split="train", epoch=step // 10)
        expected.append((step, step // 10, loss.item()))
    assert reads == [16, 16], "one transfer per 16 calls, none per step"
    tel.close()
    assert reads[-1] == 8, "close reads what is left"
    logged = [r for r in rows(tel.run_dir, Stream.SCALARS) if r["name"] == "loss"]
    assert [(r["step"], r["epoch"], r["value"]) for r in logged] == expected
    scale = [r["value"] for r in rows(tel.run_dir, Stream.SCALARS) if r["name"] == "lr_scale"]
    assert scale == [0.5] * 40
