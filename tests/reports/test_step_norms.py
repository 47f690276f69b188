"""The global gradient norm at every optimizer step: before clipping and as the optimizer saw it
(the ``system`` stream's grad_norm, grad_norm_step and clip_ratio, issue 16)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from analysis import Diagnosis, Finding, Severity
from reports import data, render_report, series, step_norms
from reports.blocks import Chart
from reports.budget import Budget
from reports.evidence import Link, links
from reports.step_norms import LINES
from tests.builders import RunBuilder
from tests.reports.pages import Parts, datasets, legend_labels, marks, open_undiagnosed

TITLE = "global gradient norm per optimizer step"
PRE, AT = LINES


def _clipped_run(root: Path, run_id: str = "r", *, steps: int = 10, max_norm: float = 1.0) -> None:
    """Pre-clip norms 3, 0.5, 3, 0.5, ... clipped to ``max_norm`` when above it."""
    pre = [3.0 if i % 2 == 0 else 0.5 for i in range(steps)]
    at = [min(n, max_norm) for n in pre]
    ratio = [a / p if a < p else None for p, a in zip(pre, at, strict=True)]
    run = RunBuilder(root, run_id).scalars("loss", "train", [1.0 / (i + 1) for i in range(steps)])
    run.system(
        [0.02] * steps,
        [0.01] * steps,
        grad_norm=pre,
        grad_norm_step=at,
        clip_ratio=ratio,
        batch_size=[32] * steps,
        backwards=[1] * steps,
    )
    run.finish().write()


def _unclipped_run(root: Path, run_id: str = "r", *, steps: int = 10) -> None:
    norms = [2.0 - i / steps for i in range(steps)]
    run = RunBuilder(root, run_id).scalars("loss", "train", [1.0] * steps)
    nones: list[float | None] = [None] * steps
    run.system(
        [0.02] * steps, [0.01] * steps, grad_norm=norms, grad_norm_step=norms, clip_ratio=nones
    )
    run.finish().write()


def _page(root: Path, findings: list[Finding] | None = None) -> tuple[str, Parts]:
    store, diagnosis = open_undiagnosed(root)
    html = render_report(store, Diagnosis(diagnosis.runs, findings or []))
    return html, Parts(html)


def _title(spec: dict[str, Any]) -> str:
    t = spec.get("title")
    return str(t.get("text") if isinstance(t, dict) else t)


def _charts(parts: Parts) -> list[dict[str, Any]]:
    return [s for s in parts.chart_specs() if _title(s) == TITLE]


def _lines(spec: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for row in datasets(spec):
        if "norm" in row:
            out.setdefault(row["line"], []).append((row["step"], row["norm"]))
    return {k: sorted(v) for k, v in out.items()}


def test_a_clipped_run_draws_both_norms_and_says_how_often_it_was_clipped(
    tmp_path: Path,
) -> None:
    _clipped_run(tmp_path, steps=10)
    _, parts = _page(tmp_path)
    (chart,) = _charts(parts)
    lines = _lines(chart)
    assert list(lines) == [PRE, AT], "the optimizer's line is drawn last, on top"
    assert lines[PRE] == [(s, 3.0 if s % 2 else 0.5) for s in range(1, 11)]
    assert lines[AT] == [(s, 1.0 if s % 2 else 0.5) for s in range(1, 11)]
    assert chart["title"]["subtitle"] == "clipped on 5 of 10 steps"
    assert chart["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    assert legend_labels(chart) == [PRE, AT]
    assert parts.sections == ["findings", "runs", "curves", "gradients", "system"]


def test_an_unclipped_run_draws_one_line(tmp_path: Path) -> None:
    _unclipped_run(tmp_path, steps=12)
    _, parts = _page(tmp_path)
    (chart,) = _charts(parts)
    assert list(_lines(chart)) == [PRE]
    assert len(_lines(chart)[PRE]) == 12
    assert chart["title"]["subtitle"] == "not clipped on any of 12 steps"
    assert legend_labels(chart) == [PRE]


def test_no_grad_norm_no_chart(tmp_path: Path) -> None:
    """A store written before issue 16, or a run without an optimizer: timing only."""
    run = RunBuilder(tmp_path, "old").scalars("loss", "train", [1.0, 0.5, 0.25])
    run.system([0.02] * 3, [0.01] * 3)
    run.finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    assert data.load(store, diagnosis).per_run[0].step_norms is None
    _, parts = _page(tmp_path)
    assert _charts(parts) == []
    assert "gradients" not in parts.sections and "system" in parts.sections
    assert step_norms.summarize(pl.DataFrame({"step": [1], "step_time_s": [0.1]})) is None


def test_untimed_steps_keep_their_norms_and_leave_the_timing_charts_alone(
    tmp_path: Path,
) -> None:
    """The collector writes a row per step; its timing is null when the step was not timed."""
    times: list[float | None] = [0.02, None, 0.02, None, 0.02, 0.02]
    norms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0] * 6)
    run.system(times, times, grad_norm=norms, grad_norm_step=norms)
    run.finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    loaded = data.load(store, diagnosis).per_run[0]
    assert loaded.system is not None and loaded.system.time is not None
    assert loaded.system.time.markers.height == 0, "an untimed step is not a red mark"
    assert sorted(set(loaded.system.time.points["step"].to_list())) == [1, 3, 5, 6]
    assert loaded.step_norms is not None
    assert loaded.step_norms.series.points["step"].to_list() == [1, 2, 3, 4, 5, 6]


def test_a_nan_norm_is_marked_once_on_the_pre_clip_line(tmp_path: Path) -> None:
    pre = [3.0, 3.0, math.nan, 3.0]
    at = [1.0, 1.0, math.nan, 1.0]
    ratio = [1 / 3, 1 / 3, None, 1 / 3]
    run = RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0] * 4)
    run.system([0.02] * 4, [0.01] * 4, grad_norm=pre, grad_norm_step=at, clip_ratio=ratio)
    run.finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    norms = data.load(store, diagnosis).per_run[0].step_norms
    assert norms is not None
    assert norms.series.markers.select("line", "step", series.LABEL).rows() == [(PRE, 3, "NaN")]
    assert norms.subtitle == "clipped on 3 of 3 steps", "of the steps with finite norms"
    _, parts = _page(tmp_path)
    (chart,) = _charts(parts)
    assert {"rule", "point"} <= {m["type"] for m in marks(chart)}
    assert "1 value could not be drawn (NaN; first at step 3): red marks." in parts.plain_text


def test_long_runs_are_decimated_like_every_series(tmp_path: Path) -> None:
    n = 10_000
    pre = [5.0 + math.sin(i / 50) for i in range(n)]
    pre[7_000] = 500.0  # a spike decimation must keep
    steps = pl.DataFrame(
        {
            "step": range(1, n + 1),
            "grad_norm": pre,
            "grad_norm_step": [1.0] * n,
            "clip_ratio": [1.0 / p for p in pre],
        }
    )
    budget = Budget().share(4)
    norms = step_norms.summarize(steps, budget=budget)
    assert norms is not None
    per_line = norms.series.points.group_by("line").len().rows()
    assert all(count <= budget.series for _, count in per_line) and len(per_line) == 2
    assert norms.series.total == 2 * n
    assert 500.0 in norms.series.points["norm"].to_list()
    assert norms.series.note is not None and "points drawn" in norms.series.note
    assert norms.subtitle == "clipped on 10,000 of 10,000 steps"


def test_lr_too_high_links_to_the_loss_and_to_the_norm_before_clipping(tmp_path: Path) -> None:
    _clipped_run(tmp_path, "a")
    _unclipped_run(tmp_path, "b")
    findings = [
        Finding("lr_too_high", Severity.ERROR, "a", "loss/train", 3, "loss rose", "lower lr"),
        Finding("missing_zero_grad", Severity.ERROR, "b", "optimizer.zero_grad", 2, "m", "s"),
    ]
    html, _ = _page(tmp_path, findings)
    hrefs = re.findall(r'<a class="evidence" href="#(chart-\d+)">([^<]*)</a>', html)
    specs = dict(re.findall(r'data-chart="(chart-\d+)"[^>]*>(.*?)</script>', html, re.S))
    (loss, a_first), (norm_a, a_also), (norm_b, b_first) = hrefs
    # Two runs: the loss is one chart with both runs on it (reports.figures.overlay).
    assert (a_first, a_also) == ("Evidence: loss: all runs ↓", f"{TITLE} ↓")
    assert b_first == f"Evidence: {TITLE} ↓"
    assert '"loss: all runs"' in specs[loss] and TITLE not in specs[loss]
    assert "clipped on 5 of 10 steps" in specs[norm_a]
    assert "not clipped on any of 10 steps" in specs[norm_b]


def test_evidence_adds_the_step_norm_chart_once_and_only_when_drawn() -> None:
    def index(*topics: str) -> dict[str, Chart]:
        return {t: Chart(f"chart-{i}", {"title": t}, topic=t) for i, t in enumerate(topics, 1)}

    charts = index("metric:loss", "grad_norms", "grad_global", "grad_step")
    assert links(charts, "lr_too_high", "loss/train") == [
        Link("chart-1", "metric:loss"),
        Link("chart-4", "grad_step"),
    ]
    assert links(charts, "exploding_gradients", "fc.weight") == [
        Link("chart-2", "grad_norms"),
        Link("chart-4", "grad_step"),
    ]
    assert links(charts, "missing_zero_grad", "optimizer.zero_grad") == [
        Link("chart-4", "grad_step")
    ]
    assert links(index("metric:loss"), "lr_too_high", "loss/train") == [
        Link("chart-1", "metric:loss")
    ]
    assert links(index("grad_step"), "lr_too_high", "loss/train") == [
        Link("chart-1", "grad_step")
    ], "without a loss chart the norm chart is the first link, not linked twice"
    assert links(charts, "overfitting", "loss/val") == [Link("chart-1", "metric:loss")]
