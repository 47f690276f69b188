"""What mattered: the sweep's ranking of the runs' hyperparameters, parallel coordinates of
config against outcome and a scatter per top hyperparameter; failed and diverged runs
marked; shown only when the runs differ in config and have an outcome."""

from __future__ import annotations

import html as htmllib
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analysis import open_store
from analysis.sweep import Param, sweep
from reports import data, mattered, render_report
from reports import sweep as swept
from reports.budget import Budget
from reports.coordinates import OK
from tests.builders import RunBuilder
from tests.reports.pages import Parts, axis_labels, datasets, open_undiagnosed

HOSTILE_KEY = "</script><img src=x onerror=alert(4)>"
HOSTILE_LEVEL = "<script>alert(5)</script>"
RUNS = 12


def _sweep(root: Path, runs: int = RUNS) -> None:
    """Only the learning rate matters (1e-4 to 1e-1: a lower one ends lower); the last run
    diverges (its val loss goes NaN), the one before fails. ``opt`` and ``dummy`` are
    noise; the hostile key alternates between a hostile level and a plain one."""
    rng = random.Random(0)
    for i in range(runs):
        lr = 10 ** (-4 + 3 * i / (runs - 1))
        best = 0.5 + 0.2 * (math.log10(lr) + 4) + rng.gauss(0, 0.02)
        config = {
            "lr": lr,
            "opt": rng.choice(["sgd", "adam"]),
            "dummy": rng.random(),
            HOSTILE_KEY: HOSTILE_LEVEL if i % 2 else "plain",
            "seed": 7,
        }
        run = RunBuilder(root, f"run{i:02d}", name=f"sweep-{i:02d}", config=config)
        if i == runs - 1:
            run.scalars("loss", "val", [best, math.nan], steps=[10, 20]).finish()
        elif i == runs - 2:
            run.scalars("loss", "val", [best], steps=[10]).fail("RuntimeError", "CUDA error")
        else:
            run.scalars("loss", "val", [best * 2, best], steps=[10, 20]).finish()
        run.write()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Parts]:
    root = tmp_path_factory.mktemp("sweep")
    _sweep(root)
    html = render_report(*open_undiagnosed(root))
    return root, html, Parts(html)


@pytest.fixture(scope="module")
def ranked(page: tuple[Path, str, Parts]) -> list[Param]:
    """The analysis's ranking of the page's runs (what ``telemetry sweep`` prints)."""
    return [p for p in sweep(open_store(page[0])).params if p.verdict != "a name"]


def _section(html: str) -> str:
    start = html.index('<section id="what-mattered">')
    return html[start : html.index("</section>", start)]


def _chart(parts: Parts, title: str) -> dict[str, Any]:
    (spec,) = [s for s in parts.chart_specs() if str(s.get("title", {})).find(title) >= 0]
    return spec


def _rows(section: str) -> list[tuple[str, str, str]]:
    """(row class, hyperparameter, importance cell text) of each row of the ranking table."""
    found = re.findall(
        r'<tr class="([\w-]+)">\s*<td class="mono">(.*?)</td>\s*<td class="num">(.*?)</td>',
        section,
        flags=re.S,
    )
    return [(css, htmllib.unescape(name), re.sub("<[^>]*>", "", cell)) for css, name, cell in found]


def test_the_ranking_is_the_sweeps_in_order_and_no_evidence_reads_unlike_matters(
    page: tuple[Path, str, Parts], ranked: list[Param]
) -> None:
    _, html, parts = page
    assert parts.sections.index("what-mattered") == parts.sections.index("comparison") - 1
    assert ("a", {"href": "#what-mattered"}) in parts.tags
    rows = _rows(_section(html))
    assert [name for _, name, _ in rows] == [p.name for p in ranked]
    assert rows[0][:2] == ("matters", "lr") and rows[0][2] == f"{ranked[0].importance:.2f}"
    for (css, _, _), p in zip(rows, ranked, strict=True):
        assert css == {"matters": "matters", "no evidence": "no-evidence"}[p.verdict]
    text = parts.plain_text
    assert "no evidence it matters" in text
    assert f"{RUNS} runs, 2 of them failed or diverged (ranked worst)" in text
    assert "The same in every run that sets it: seed." in text


def test_parallel_coordinates_draw_a_line_per_run_and_mark_the_diverged_and_failed(
    page: tuple[Path, str, Parts], ranked: list[Param]
) -> None:
    _, _, parts = page
    spec = _chart(parts, "a line per run")
    rows = [r for r in datasets(spec) if "state" in r]
    assert len({r["run"] for r in rows}) == RUNS
    axes = [a for _, a in sorted({(r["index"], r["axis"]) for r in rows})]
    assert axes == [*[p.name for p in ranked][: swept.MAX_AXES], "best val loss"]
    outcome = {r["run"]: r for r in rows if r["axis"] == "best val loss"}
    assert {r["state"] for r in rows if r["run"] == "sweep-11"} == {"diverged"}
    assert {r["state"] for r in rows if r["run"] == "sweep-10"} == {"failed"}
    # Beyond the worst (highest) end of the outcome axis; every other run on it.
    assert outcome["sweep-11"]["y"] > 1 and outcome["sweep-10"]["y"] > 1
    assert all(
        0 <= r["y"] <= 1 for run, r in outcome.items() if run not in ("sweep-10", "sweep-11")
    )
    assert outcome["sweep-11"]["score"] is None and "diverged" in outcome["sweep-11"]["value"]
    ticks = [r for r in datasets(spec) if "label" in r]
    assert {"axis": "lr", "index": 0, "y": 1.0, "label": "0.1 (log)"} in ticks
    assert axis_labels(spec), "vl-convert compiled and drew it"


def test_a_scatter_per_top_hyperparameter_those_that_matter_first(
    page: tuple[Path, str, Parts],
) -> None:
    _, _, parts = page
    spec = _chart(parts, "against the top hyperparameters")
    titles = [panel["title"] for panel in spec["concat"]]
    assert len(titles) == swept.MAX_SCATTERS and titles[0] == "lr"
    lr = [r for r in datasets(spec) if r.get("param") == "lr"]
    worst = {r["run"]: r["y"] for r in lr if r["state"] != OK}
    best = [r["y"] for r in lr if r["state"] == OK]
    assert set(worst) == {"sweep-10", "sweep-11"} and min(worst.values()) > max(best)
    x_scale = spec["concat"][0]["layer"][-1]["encoding"]["x"]["scale"]
    assert x_scale["type"] == "log", "three decades of learning rate"
    assert axis_labels(spec), "vl-convert compiled and drew it"


def test_a_config_key_and_value_from_a_run_are_text_never_markup(
    page: tuple[Path, str, Parts],
) -> None:
    _, html, parts = page
    assert HOSTILE_KEY not in html and HOSTILE_LEVEL not in html
    section = _section(html)
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(4)&gt;" in section
    spec = _chart(parts, "a line per run")
    values = {r.get("value") for r in datasets(spec)} | {r.get("label") for r in datasets(spec)}
    assert HOSTILE_LEVEL in values, "a data value, decoded as the page decodes it"
    assert any(HOSTILE_KEY in str(r.get("axis")) for r in datasets(spec))
    for s in parts.chart_specs():
        for code in _expressions(s):
            assert "onerror" not in code and "alert" not in code


def _expressions(node: Any) -> list[str]:
    """Every Vega expression string in ``node``: run data must never become one."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "labelExpr", "test", "calculate", "filter") and isinstance(v, str):
                found.append(v)
            found.extend(_expressions(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_expressions(v))
    return found


def test_the_budget_draws_runs_picked_from_best_to_worst_and_says_so(
    page: tuple[Path, str, Parts],
) -> None:
    root, _, _ = page
    store = open_store(root)
    ids = [f"run{i:02d}" for i in range(RUNS)]
    m = swept.read(store, ids, comparison=None, budget=Budget(line_points=25))
    assert m is not None and m.runs == RUNS
    assert m.drawn == 25 // (len(m.axes) + 1) < RUNS
    drawn = set(m.lines["run"].to_list())
    assert len(drawn) == m.drawn and "sweep-00" in drawn, "the best run"
    assert drawn & {"sweep-10", "sweep-11"}, "a worst one"
    block = mattered.block(m, iter(["chart-1", "chart-2"]))
    assert block is not None
    assert f"The charts draw {m.drawn} of the {RUNS} runs" in " ".join(block.notes)


def test_three_runs_are_not_enough_to_rank_and_the_page_says_so(tmp_path: Path) -> None:
    _sweep(tmp_path, runs=3)
    html = render_report(*open_undiagnosed(tmp_path))
    parts = Parts(html)
    assert "what-mattered" in parts.sections
    assert "Not enough runs to tell what mattered: 3 with an outcome, 6 needed" in parts.plain_text
    rows = _rows(_section(html))
    assert rows and all(css == "unknown" and cell == "" for css, _, cell in rows)
    assert "not enough runs" in _section(html)
    assert _chart(parts, "a line per run")


def test_no_section_when_every_run_shares_one_config(tmp_path: Path) -> None:
    for i in range(6):
        run = RunBuilder(tmp_path, f"r{i}", config={"lr": 0.1, "opt": "sgd"})
        run.scalars("loss", "val", [1.0 + i / 10], steps=[5]).finish().write()
    parts = Parts(render_report(*open_undiagnosed(tmp_path)))
    assert "what-mattered" not in parts.sections and "comparison" in parts.sections


def test_no_section_when_no_run_has_an_outcome(tmp_path: Path) -> None:
    for i in range(3):
        run = RunBuilder(tmp_path, f"r{i}", config={"lr": 10.0**-i})
        run.scalars("loss", "train", [1.0, 0.5]).finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    assert data.load(store, diagnosis).mattered is None
    assert "what-mattered" not in Parts(render_report(store, diagnosis)).sections


def test_the_outcome_is_the_run_comparisons_metric_with_its_goal(tmp_path: Path) -> None:
    """Runs that log val accuracy and no val loss: the comparison compares acc, highest best."""
    for i, width in enumerate([16, 32, 64, 128, 256, 512]):
        acc = 0.5 + 0.05 * math.log2(width / 16)
        run = RunBuilder(tmp_path, f"w{i}", config={"width": width})
        run.scalars("acc", "val", [acc - 0.1, acc], steps=[5, 10]).finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    m = data.load(store, diagnosis).mattered
    assert m is not None and (m.metric, m.mode, m.label) == ("acc/val", "max", "best val acc")
    assert [(p.name, p.direction, p.verdict) for p in m.ranked] == [
        ("width", "higher is better", "matters")
    ]
    text = Parts(render_report(store, diagnosis)).plain_text
    assert "best val acc (highest is best, acc/val): 6 runs." in text


def test_the_section_does_not_import_torch() -> None:
    code = (
        "import reports.mattered, reports.charts.sweep, reports.sweep, analysis.sweep, "
        "scipy.stats, sys; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
