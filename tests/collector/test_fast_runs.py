"""Issue 18, item 9: a fast run keeps one global gradient norm per step.

Per-parameter statistics are sampled (the overhead budget thins them once the dense
start is over: a 1.7 ms step had 25 points over 1,650 steps), but the global gradient
norm is one scalar a step, computed on the device anyway: it is recorded on every
step, and the report draws it per step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from analysis import diagnose, open_store
from collector import Collector
from reports.data import load

STEPS = 300


def test_every_step_has_its_gradient_norm_while_parameter_statistics_are_sampled(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    # Defaults: dense for the first steps, then as often as the overhead budget allows
    # (a budget this small thins the statistics at once on any machine).
    with Collector(tmp_path, name="fast", model=model, optimizer=opt, overhead_budget=1e-4) as tel:
        for _ in range(STEPS):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
    with open_store(tmp_path) as store:
        sampled = store.sql("SELECT count(DISTINCT step) AS n FROM tensors WHERE kind = 'grad'")
        norms = store.sql("SELECT step, grad_norm FROM system WHERE grad_norm IS NOT NULL")
        data = load(store, diagnose(store))
    assert sampled["n"][0] < STEPS / 2, "the statistics were not thinned: the test tests nothing"
    assert sorted(norms["step"].to_list()) == list(range(1, STEPS + 1))
    (run,) = data.per_run
    assert run.step_norms is not None
    points = run.step_norms.series.points
    drawn = points.filter(points["line"] == points["line"][0])
    assert drawn["step"].to_list() == list(range(1, STEPS + 1))  # no decimation this short
