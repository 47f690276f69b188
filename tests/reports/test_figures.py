"""The training sections of the page: overlay, weights and updates, system, comparison, and
the runs table that sorts and stays usable with many runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analysis import Diagnosis, Finding, Severity, open_store
from reports import render_report
from tests.builders import RunBuilder
from tests.reports.pages import (
    HOSTILE,
    Parts,
    datasets,
    legend_labels,
    marks,
    named,
    open_undiagnosed,
)

PARAMS = ("conv.weight", "conv.bias", "fc.weight")


def _run(root: Path, run_id: str, *, lr: float, opt: str, start: float, steps: int = 40) -> None:
    run = RunBuilder(root, run_id, config={"lr": lr, "opt": opt, "seed": 0}, start=start)
    loss = [2.0 / (1 + lr * i) for i in range(steps)]
    run.scalars("loss", "train", loss).scalars("loss", "val", [loss[-1]], steps=[steps])
    run.scalars("acc", "val", [0.5 + lr], steps=[steps])
    for p in PARAMS:
        run.tensors(p, "grad", [0.1] * steps)
        run.tensors(p, "weight", [1.0] * steps)
        run.tensors(p, "update", [1e-3] * steps)
    run.system([0.02] * steps, [0.01] * steps)
    run.finish().write()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Parts]:
    root = tmp_path_factory.mktemp("store")
    _run(root, "a", lr=0.1, opt="sgd", start=1_700_000_000.0)
    _run(root, "b", lr=0.01, opt=HOSTILE, start=1_700_001_000.0)
    _run(root, "c", lr=1.0, opt="adam", start=1_700_002_000.0)
    store, diagnosis = open_undiagnosed(root)
    finding = Finding("data_bottleneck", Severity.WARNING, "b", "data_time_s", 5, "slow", "fix")
    html = render_report(store, Diagnosis(diagnosis.runs, [finding]))
    return html, Parts(html)


def _spec(parts: Parts, title: str) -> list[dict[str, Any]]:
    def text(s: dict[str, Any]) -> str:
        t = s.get("title")
        return str(t.get("text") if isinstance(t, dict) else t)

    return [s for s in parts.chart_specs() if text(s) == title]


def test_sections_follow_the_issue_order(page: tuple[str, Parts]) -> None:
    _, parts = page
    assert parts.sections == [
        "findings",
        "runs",
        "curves",
        "gradients",
        "weights",
        "system",
        "what-mattered",
        "comparison",
    ]


def test_all_runs_are_overlaid_per_metric(page: tuple[str, Parts]) -> None:
    _, parts = page
    (loss,) = _spec(parts, "loss: all runs")
    runs = {row["run"] for row in named(loss)}
    assert runs == {"a", "b", "c"}
    assert {row["split"] for row in named(loss)} == {"train", "val"}
    assert legend_labels(loss)[:3] == ["a", "b", "c"], "runs in the order they started"


def test_update_ratio_chart_shades_the_rule_band(page: tuple[str, Parts]) -> None:
    _, parts = page
    ratios = _spec(parts, "update / weight ratio per parameter")
    assert len(ratios) == 3 and len(_spec(parts, "weight norm per parameter")) == 3
    rows = datasets(ratios[0])
    assert {"low": 1e-5, "high": 0.1} in rows, "the update_ratio rule's defaults"
    assert {r["ratio"] for r in rows if "ratio" in r} == {1e-3}
    assert "rect" in {m["type"] for m in marks(ratios[0])}


def test_system_splits_step_time_into_data_wait_and_compute(page: tuple[str, Parts]) -> None:
    _, parts = page
    # Several runs: one chart with every run on it, a panel per part of the step.
    (chart,) = _spec(parts, "step time: data wait and compute")
    seen = {(r["run"], r["split"], r["value"]) for r in named(chart) if "split" in r}
    assert seen == {(run, part, 0.01) for run in "abc" for part in ("data wait", "compute")}


def test_comparison_lists_varying_config_against_best_val_loss(page: tuple[str, Parts]) -> None:
    html, parts = page
    section = html[html.index('<section id="comparison">') :]
    heads = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", section)
    assert heads == ["run", "status", "lr", "opt", "best val loss"], "seed is the same everywhere"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and HOSTILE not in section
    (chart,) = _spec(parts, "hyperparameters vs best val loss")
    assert {r["hyperparameter"] for r in datasets(chart)} == {"lr", "opt"}


def test_runs_table_has_best_and_final_metrics_and_sort_keys(page: tuple[str, Parts]) -> None:
    html, parts = page
    start = html.index('<table class="runs sortable">')
    table = html[start : html.index("</table>", start)]
    assert table.count('data-sort="number"') == 5
    assert "loss 0.4" in parts.plain_text  # best val loss of run a: 2 / (1 + 0.1 * 39)
    assert "1 warning" in table and 'data-value="1000"' in table


def test_a_finding_links_to_its_evidence_chart(page: tuple[str, Parts]) -> None:
    html, _ = page
    (href,) = re.findall(r'<a class="evidence" href="#(chart-\d+)">', html)
    assert f'<div id="{href}" class="chart">' in html
    start = html.index(f'data-chart="{href}"')
    block = html[start : html.index("</script>", start)]
    assert '"title":"step time: data wait and compute"' in block


def test_many_runs_get_charts_for_the_most_recent_only(tmp_path: Path) -> None:
    for i in range(5):
        RunBuilder(tmp_path, f"r{i}", start=1_700_000_000.0 + i).scalars(
            "loss", "train", [1.0, 0.5]
        ).finish().write()
    store = open_store(tmp_path)
    runs = store.sql("SELECT * FROM runs ORDER BY started_at, run_id")
    parts = Parts(render_report(store, Diagnosis(runs), max_runs=2))
    text = parts.plain_text
    assert "Charts for the 2 most recently started of 5 runs" in text
    (loss,) = parts.chart_specs()
    assert {row["run"] for row in named(loss)} == {"r3", "r4"}, "the two latest runs, overlaid"
    assert all(f"r{i}" in text for i in range(5)), "the runs table lists every run"
    with pytest.raises(ValueError, match="max_runs must be at least 1"):
        render_report(store, Diagnosis(runs), max_runs=0)
