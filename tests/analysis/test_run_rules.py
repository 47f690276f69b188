"""Rules about how a run ran: ``run_failed`` (the exception it ended with, explained),
``device_underused`` (the CPU beside a visible GPU, DataParallel) and
``memory_pressure`` (a peak near the device's memory, a failure out of memory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from analysis import Finding, diagnose, load_rules, open_store
from collector import Collector, NonFiniteError

RULES = [r for r in load_rules() if r.id in ("run_failed", "device_underused", "memory_pressure")]


def _findings(root: Path) -> dict[str, list[Finding]]:
    with open_store(root) as store:
        names = dict(store.sql("SELECT run_id, name FROM runs").rows())
        found: dict[str, list[Finding]] = {}
        for f in diagnose(store, rules=RULES).findings:
            found.setdefault(names[f.run_id], []).append(f)
    return found


def _fail(root: Path, name: str, fail: Callable[[], object], *, steps: int = 1) -> None:
    with pytest.raises(Exception), Collector(root, name=name) as tel:  # noqa: B017
        for step in range(1, steps + 1):
            tel.log({"loss": 1.0}, step=step)
        fail()


def _oom() -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _nonfinite() -> None:
    raise NonFiniteError("step 3: the training loss 'loss' is nan")


CASES: dict[str, tuple[Callable[[], object], str, str]] = {
    "shape": (
        lambda: torch.nn.Linear(8, 2)(torch.ones(4, 5)),
        "shape_mismatch",
        "the data's shape does not match",
    ),
    "labels": (
        lambda: torch.nn.functional.cross_entropy(torch.zeros(3, 10), torch.tensor([1, 10, 2])),
        "labels_out_of_range",
        "a label outside the classes",
    ),
    "dtype": (
        lambda: torch.nn.Linear(2, 2)(torch.ones(2, 2, dtype=torch.float64)),
        "dtype_mismatch",
        "tensors of different types",
    ),
    "oom": (_oom, "out_of_memory", "out of memory"),
    "guard": (_nonfinite, "nonfinite", "on_nonfinite"),
    "other": (lambda: 1 / 0, "other", "read the exception"),
}


def test_a_failed_run_is_explained_by_its_exception(tmp_path: Path) -> None:
    for name, (fail, _, _) in CASES.items():
        _fail(tmp_path, name, fail, steps=3)
    _fail(tmp_path, "at_start", CASES["shape"][0], steps=0)
    with Collector(tmp_path, name="fine") as tel:
        tel.log({"loss": 1.0}, step=1)
    found = _findings(tmp_path)
    assert "fine" not in found
    for name, (_, cause, advice) in CASES.items():
        [f] = [f for f in found[name] if f.rule == "run_failed"]
        assert f.rule == "run_failed" and f.severity.value == "error"
        assert f.evidence["cause"] == cause, name
        if name == "oom":  # memory_pressure explains it: its fix is the one given
            assert f.caused_by == "memory_pressure:host memory"
            assert "make room before the next run" in f.suggestion.lower()
        else:
            assert advice in f.suggestion.lower(), name
        assert f.step == 3 and "failed at step 3 with" in f.message
    [start] = found["at_start"]
    assert "failed before its first optimizer step with RuntimeError: mat1 and mat2" in (
        start.message
    )
    assert start.evidence["before_training"] is True


def test_a_resumed_run_that_finished_is_not_failed(tmp_path: Path) -> None:
    _fail(tmp_path, "resumed", CASES["other"][0], steps=2)
    with open_store(tmp_path) as store:
        run_id = store.run_ids()[0]
    with Collector(tmp_path, resume=run_id) as tel:
        tel.log({"loss": 0.5}, step=5)
    assert _findings(tmp_path) == {}


def test_cpu_beside_a_visible_gpu_and_data_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch.nn.Linear(4, 1)
    wrapped = torch.nn.DataParallel(torch.nn.Linear(4, 1))  # made while no GPU is seen
    with Collector(tmp_path, name="cpu_only", model=model):
        pass
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # what the collector asks
    with Collector(tmp_path, name="gpu_idle", model=torch.nn.Linear(4, 1)):
        pass
    with Collector(tmp_path, name="dp", model=wrapped):
        pass
    found = _findings(tmp_path)
    assert "cpu_only" not in found  # no GPU visible: the CPU is the machine's device
    [idle] = found["gpu_idle"]
    assert idle.evidence == {"cause": "cpu_beside_gpu", "device": "cpu", "cuda_devices": 2}
    assert "while 2 CUDA device(s) were visible" in idle.message
    causes = sorted(f.evidence["cause"] for f in found["dp"])
    assert causes == ["cpu_beside_gpu", "data_parallel"]
    dp = next(f for f in found["dp"] if f.evidence["cause"] == "data_parallel")
    assert "DistributedDataParallel" in dp.suggestion


def _steps(tel: Collector, model: torch.nn.Module, opt: torch.optim.Optimizer, n: int) -> None:
    for _ in range(n):
        loss = model(torch.ones(8, 4)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tel.log({"loss": loss})


def test_memory_near_full_and_out_of_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import payload
    from collector.system import peak_host_memory_bytes

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Collector(tmp_path, name="roomy", model=model, optimizer=opt) as tel:
        _steps(tel, model, opt, 3)
    # a machine whose memory this process's peak RSS fills to 95 %
    monkeypatch.setattr(
        payload, "memory_total_bytes", lambda device: int(peak_host_memory_bytes() / 0.95)
    )
    with Collector(tmp_path, name="full", model=model, optimizer=opt) as tel:
        _steps(tel, model, opt, 3)
    monkeypatch.undo()
    with (
        pytest.raises(RuntimeError),
        Collector(tmp_path, name="oom", model=model, optimizer=opt) as tel,
    ):
        _steps(tel, model, opt, 2)
        torch.nn.functional.interpolate(torch.ones(1, 1, 8, 8), size=(2**21, 2**21))
    found = _findings(tmp_path)
    assert "roomy" not in found
    [full] = found["full"]
    assert full.rule == "memory_pressure" and full.subject == "host memory"
    assert 0.9 <= full.evidence["share"] <= 1.0 and "of the" in full.message
    oom = {f.rule: f for f in found["oom"]}
    assert oom["memory_pressure"].evidence["failed_out_of_memory"] is True
    assert "failed out of memory at step 2" in oom["memory_pressure"].message
    assert oom["run_failed"].evidence["cause"] == "out_of_memory"
    assert oom["run_failed"].caused_by == oom["memory_pressure"].key


def test_class_imbalance_judges_a_validation_split_first_and_not_one_rare_example(
    tmp_path: Path,
) -> None:
    """Skewed 20:1 training labels; 'valid' (not 'test', first by name) shows the harm;
    a run whose validation holds one rare example is too noisy to judge."""
    from tests.analysis.cases import confusion_cells
    from tests.builders import RunBuilder

    for run_id, rare_val in (("named-valid", 30), ("one-rare", 1)):
        run = RunBuilder(tmp_path, run_id).scalars("loss", "train", [1.0] * 5)
        run.confusion("train", 5, confusion_cells([1000, 1000, 50], [0.9, 0.9, 0.1]))
        run.confusion("valid", 5, confusion_cells([100, 100, rare_val], [0.95, 0.95, 0.0]))
        run.confusion("test", 5, confusion_cells([100, 100, 30], [0.95, 0.95, 0.9]))
        run.finish().write()
    with open_store(tmp_path) as store:
        rules = [r for r in load_rules() if r.id == "class_imbalance"]
        found = {f.run_id: f for f in diagnose(store, rules=rules).findings}
    assert set(found) == {"named-valid"}
    assert found["named-valid"].subject == "valid"
    assert found["named-valid"].evidence["rare_examples"] == 30
