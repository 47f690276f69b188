"""A real collector's inputs, predictions and memory reach the page, and draw in a browser.

A small CNN trains on raw 0-255 pixels and logs its predictions on two splits; a linear
regression logs its own. The report has the three sections (peak memory in the system
section), the finding of unnormalized_inputs links to the input chart, and headless
Chromium draws every chart with no error and no request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import diagnose, open_store
from reports import write_report
from tests.reports.browser import open_report
from tests.reports.pages import Parts


def _train(root: Path) -> None:
    import torch

    from collector import Collector

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)
    )
    opt = torch.optim.SGD(cnn.parameters(), lr=1e-4)
    weights = torch.tensor([0.6, 0.2, 0.1, 0.07, 0.03])
    with Collector(root, name="cnn", model=cnn, optimizer=opt, activations_every=4) as tel:
        for step in range(1, 13):
            x = torch.randint(0, 256, (16, 3, 8, 8)).float()
            y = torch.multinomial(weights, 16, replacement=True)
            out = cnn(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
            tel.log_predictions(y, out.detach(), split="train")
            if step % 6 == 0:
                with torch.no_grad():
                    tel.log_predictions(y, cnn(x), split="val")
    reg = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(reg.parameters(), lr=1e-2)
    with Collector(root, name="reg", model=reg, optimizer=opt, activations_every=4) as tel:
        for step in range(1, 13):
            x = torch.randn(32, 3)
            t = x.sum(1, keepdim=True)
            out = reg(x)
            loss = torch.nn.functional.mse_loss(out, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
            if step % 4 == 0:
                tel.log_predictions(t, out.detach(), split="val")


@pytest.mark.slow
def test_a_real_run_draws_inputs_predictions_and_memory_in_a_browser(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _train(root)
    store = open_store(root)
    diagnosis = diagnose(store)
    out = write_report(store, diagnosis, tmp_path / "report.html")
    parts = Parts(out.read_text(encoding="utf-8"))
    assert {"predictions", "inputs", "system"} <= set(parts.sections)
    titles = [str(s.get("title")) for s in parts.chart_specs()]
    for title in ("confusion matrix", "recall per class", "regression errors", "model input"):
        assert any(title in t for t in titles), title
    assert sum("peak memory" in t for t in titles) == 2, "one per run"
    raw = [f for f in diagnosis.findings if f.rule == "unnormalized_inputs"]
    assert [f.evidence["reason"] for f in raw] == ["raw_pixels"]
    assert "Evidence: model input per channel" in parts.plain_text
    seen = open_report(out, tmp_path / "report.png")
    assert seen.blocked_requests == [] and seen.console_errors == [] and seen.page_errors == []
    assert seen.charts and all(c["drawn"] for c in seen.charts)
    assert [target for target, exists in seen.links if not exists] == []
