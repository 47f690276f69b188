"""reports.multiples: several runs' charts as a row per quantity, a small chart per run."""

from __future__ import annotations

from pathlib import Path

from analysis import Diagnosis, Finding, Severity
from reports import evidence, internals, multiples, sections
from reports.blocks import Chart, RunCharts
from reports.data import load
from tests.builders import RunBuilder
from tests.reports.pages import open_undiagnosed


def _chart(chart_id: str, topic: str, title: object) -> Chart:
    return Chart(chart_id, {"title": title, "width": 180}, topic=topic)


def test_a_row_per_quantity_with_each_runs_chart_named_in_its_subtitle() -> None:
    clipped = {"text": "global gradient norm per optimizer step", "subtitle": "clipped on 3"}
    a = RunCharts("a-1", "a (a-1)", [_chart("c1", "grad_step", clipped), _chart("c2", "g", "g")])
    b = RunCharts("b-2", "b (b-2)", [_chart("c3", "g", "g")])
    rows = multiples.rows([a, b], {"a-1": "a", "b-2": "b"})
    assert [(r.title, [c.id for c in r.charts], r.missing) for r in rows] == [
        ("global gradient norm per optimizer step", ["c1"], ["b"]),
        ("g", ["c2", "c3"], []),
    ]
    assert rows[0].charts[0].spec["title"] == {
        "text": "global gradient norm per optimizer step",
        "subtitle": ["a", "clipped on 3"],
    }
    assert rows[1].charts[1].spec["title"] == {"text": "g", "subtitle": ["b"]}
    assert rows[1].charts[1].spec["width"] == 180 and rows[1].charts[1].topic == "g"


def _run(root: Path, run_id: str) -> None:
    run = RunBuilder(root, run_id, start=1_700_000_000.0 + len(run_id))
    run.scalars("loss", "train", [1.0, 0.9, 0.8])
    for p in ("fc.weight", "fc.bias"):
        run.tensors(p, "grad", [0.1, 0.2, 0.3])
    run.system([0.02] * 3, [0.01] * 3)
    run.finish().write()


def test_several_runs_draw_gradients_as_rows_and_overlay_step_times(tmp_path: Path) -> None:
    for run_id in ("a", "b", "c"):
        _run(tmp_path, run_id)
    store, diagnosis = open_undiagnosed(tmp_path)
    finding = Finding("data_bottleneck", Severity.WARNING, "b", "data_time_s", 2, "slow", "fix")
    page = sections.build(load(store, Diagnosis(diagnosis.runs, [finding])))
    assert [len(r.charts) for r in page.gradient_rows] == [3, 3, 3, 3]
    assert [r.title for r in page.gradient_rows][0] == "global gradient norm"
    titles = [evidence.title(c) for c in page.system_overlay]
    assert titles == ["step time: data wait and compute"], "no samples_per_s: no throughput"
    assert page.system == [] and page.without_system == []
    (row,) = [f.rows[0] for f in page.findings if f.rows]
    assert row.evidence is not None and row.evidence.chart_id == page.system_overlay[0].id


def test_a_lone_run_keeps_its_own_full_size_charts(tmp_path: Path) -> None:
    _run(tmp_path, "a")
    page = sections.build(load(*open_undiagnosed(tmp_path)))
    assert page.gradient_rows == [] and page.system_overlay == []
    assert [c.spec.get("width") for c in page.gradients[0].charts][:2] == [600, 600]
    assert [c.topic for c in page.system[0].charts] == ["system"]


def test_runs_with_the_same_model_share_one_summary_table() -> None:
    same = [internals.ModelTable(r, r, [], "1", "1", "0", "4 B") for r in ("a", "b")]
    changed = internals.ModelTable("c", "c", [], "2", "2", "0", "8 B")
    shared = internals.shared([*same, changed])
    assert [(s.names, s.table.total_params) for s in shared] == [(["a", "b"], "1"), (["c"], "2")]
