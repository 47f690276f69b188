"""From a training loop to findings: the path a user takes, with real torch models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from analysis import Severity, diagnose, open_store
from collector import Collector


def test_tiny_training_run_lands_in_the_store_and_is_analyzed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    with Collector(tmp_path, name="tiny", config={"lr": 0.1}, model=model, optimizer=opt) as tel:
        for epoch in range(3):
            for i in range(0, 64, 16):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x[i : i + 16]), y[i : i + 16])
                loss.backward()
                opt.step()
                tel.log({"loss": loss}, split="train")
            with torch.no_grad():
                tel.log({"loss/val": nn.functional.cross_entropy(model(x), y)}, epoch=epoch)

    store = open_store(tmp_path)
    assert store.sql("SELECT name, status, steps FROM runs").rows() == [("tiny", "finished", 12)]
    per_kind = store.sql("SELECT kind, count(*) AS n FROM tensors GROUP BY kind ORDER BY kind")
    assert per_kind.rows() == [("grad", 48), ("update", 48), ("weight", 48)]  # 4 params x 12
    assert store.sql("SELECT count(*) AS n FROM scalars WHERE name = 'lr'")["n"][0] == 12
    # A system row per step; untimed: the first step (no previous step) and the first
    # step after each validation pass (its window contains eval forwards): 12 - 1 - 2.
    assert store.sql("SELECT count(*) AS n FROM system")["n"][0] == 12
    timed = "SELECT count(*) AS n FROM system WHERE step_time_s IS NOT NULL"
    assert store.sql(timed)["n"][0] == 9
    assert store.sql("SELECT count(grad_norm) AS n FROM system")["n"][0] == 12
    diagnosis = diagnose(store)
    assert [f for f in diagnosis.findings if f.severity == Severity.ERROR] == []
    assert any(n.rule == "loss_not_decreasing" for n in diagnosis.not_evaluated)  # 12 < 20 points


@pytest.mark.slow
def test_demo_flags_each_pathology_and_leaves_the_healthy_run_clean(tmp_path: Path) -> None:
    from telemetry.demo import run_demo

    run_ids = run_demo(tmp_path)
    store = open_store(tmp_path)
    names = dict(store.sql("SELECT run_id, name FROM runs").rows())
    flagged: dict[str, set[str]] = {names[r]: set() for r in run_ids}
    for f in diagnose(store).findings:
        if f.severity != Severity.INFO:
            flagged[names[f.run_id]].add(f.rule)
    assert flagged["healthy"] == set()
    assert "overfitting" in flagged["overfit"]
    assert "vanishing_gradients" in flagged["vanishing"]
    assert "dead_relu" in flagged["dead_relu"]
    assert "exploding_gradients" in flagged["exploding"]
    assert {"divergence", "nonfinite"} <= flagged["exploding"]
    assert "unnormalized_inputs" in flagged["exploding"]
    assert flagged["imbalanced"] == {"class_imbalance"}
    confusion = store.sql("SELECT DISTINCT run_id, split FROM confusion")
    assert len(confusion) == 2 * len(run_ids)  # every run's train and val predictions
    origin = store.sql("SELECT payload FROM events WHERE kind = 'nonfinite_origin'")
    assert len(origin) == 1  # only the exploding run, named once
    modules = store.sql("SELECT DISTINCT run_id FROM modules")
    assert len(modules) == len(run_ids)  # every run has its model summary
    samples = store.sql("SELECT DISTINCT what FROM samples ORDER BY what")["what"].to_list()
    assert samples == ["feature_map", "filter"]


_SCRIPT = """
import sys, torch
from collector import Collector
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
tel = Collector(sys.argv[1], name="script", model=model, optimizer=opt)
for _ in range(3):
    opt.zero_grad(); model(torch.ones(4, 2)).sum().backward(); opt.step()
    tel.log({"loss": 1.0})
if sys.argv[2] == "raise":
    raise RuntimeError("out of memory, pretend")
"""


@pytest.mark.parametrize(("ending", "status"), [("exit", "finished"), ("raise", "failed")])
def test_a_script_that_never_closes_still_records_how_it_ended(
    tmp_path: Path, ending: str, status: str
) -> None:
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    store = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(script), str(store), ending], capture_output=True, text=True
    )
    assert proc.returncode == (0 if ending == "exit" else 1), proc.stderr
    runs = open_store(store).sql("SELECT status, steps, error FROM runs")
    assert runs.rows()[0][:2] == (status, 3)
    if ending == "raise":
        assert runs["error"][0] == "RuntimeError: out of memory, pretend"
