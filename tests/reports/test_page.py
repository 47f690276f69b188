"""The report page: self-contained, ordered, honest about gaps, and safe with hostile run data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import polars as pl
import pytest

from analysis import Diagnosis, Finding, NotEvaluated, Severity, diagnose, open_store
from reports import evidence, render_report, write_report
from reports.blocks import Chart
from reports.page import script_json
from store.schema import SCHEMA_VERSION
from tests.builders import RunBuilder
from tests.reports.pages import HOSTILE, Parts, datasets, marks, open_diagnosed, trained


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Parts]:
    """A healthy run and a failed one with a NaN loss, rendered once for several tests."""
    root = tmp_path_factory.mktemp("store")
    trained(root, "good", name="healthy")
    bad = RunBuilder(root, "bad", name="diverged", config={"lr": 10.0})
    bad.scalars("loss", "train", [2.0, 1.0, math.nan, math.nan, 3.0])
    bad.fail("FloatingPointError", "loss is NaN").write()
    store = open_store(root)
    diagnosis = diagnose(store)
    healthy_rules = {f.rule for f in diagnosis.findings if f.run_id == "good"}
    assert healthy_rules == set(), "the fixture's healthy run must be clean"
    html = render_report(store, diagnosis, title="nightly")
    return html, Parts(html)


def test_page_is_self_contained_with_the_vega_bundle_inline(two_runs: tuple[str, Parts]) -> None:
    html, parts = two_runs
    for tag, attrs in parts.tags:
        for attr in ("src", "href"):
            value = attrs.get(attr) or ""
            assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {attr}={value!r}>"
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?:", html)
    code = [body for attrs, body in parts.scripts if "type" not in attrs]
    assert any("window.vegaEmbed=" in body for body in code), "Vega-Embed is inlined"
    assert "default-src 'none'" in html, "a CSP forbids fetching anything"


def test_sections_come_in_order_findings_runs_curves(two_runs: tuple[str, Parts]) -> None:
    _, parts = two_runs
    assert parts.sections == [
        "findings",
        "runs",
        "curves",
        "gradients",
        "what-mattered",
        "comparison",
    ]


def test_header_names_store_runs_schema_and_version(two_runs: tuple[str, Parts]) -> None:
    _, parts = two_runs
    text = parts.plain_text
    assert "nightly" in text
    assert "runs 2" in text
    assert f"schema v{SCHEMA_VERSION}" in text
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    assert re.search(r"telemetry (\d+\.\d+|unknown)", text)


def test_a_healthy_run_reads_as_healthy_and_a_broken_one_shows_its_findings(
    two_runs: tuple[str, Parts],
) -> None:
    html, parts = two_runs
    text = parts.plain_text
    assert "healthy (good) healthy No findings" in text
    assert re.search(r"diverged \(bad\) \d+ errors?", text)
    assert '<span class="badge error">error</span>' in html
    assert "Suggestion:" in text


def test_runs_table_shows_status_config_and_error(two_runs: tuple[str, Parts]) -> None:
    _, parts = two_runs
    text = parts.plain_text
    assert "lr=10.0" in text and "arch=mlp" in text
    assert "FloatingPointError: loss is NaN" in text
    assert "failed" in text and "finished" in text


def test_curves_mark_nan_loss_points_in_red_with_a_tooltip(two_runs: tuple[str, Parts]) -> None:
    _, parts = two_runs
    specs = parts.chart_specs()
    nan_rows = [row for spec in specs for row in datasets(spec) if row.get("label") == "NaN"]
    assert [(r["run"], r["split"], r["step"]) for r in nan_rows] == [
        ("diverged", "train", 3),
        ("diverged", "train", 4),
    ]
    loss = next(s for s in specs if any(r in nan_rows for r in datasets(s)))
    panel_marks = [m for panel in loss["hconcat"] for m in marks(panel)]
    assert {"rule", "point"} <= {m["type"] for m in panel_marks}
    assert any(m.get("color") == "#d62728" for m in panel_marks)
    assert "2 values could not be drawn (NaN; first at step 3): red marks." in parts.plain_text


def test_every_run_gets_its_charts_and_missing_data_is_named(two_runs: tuple[str, Parts]) -> None:
    _, parts = two_runs
    titles = [evidence.title(Chart("", spec)) for spec in parts.chart_specs()]
    # Two runs: every metric (and the learning rate) is one chart with both runs on it;
    # healthy: global and per-layer gradients as lines, heatmap and bands (small
    # multiples: its name under each title); diverged: no gradients. Their lr differs:
    # what mattered (too few runs to rank, the runs drawn as they are). One run has a val
    # metric: no comparison chart (its table remains).
    assert titles == [
        "loss: all runs",
        "acc: all runs",
        "learning rate: all runs",
        "global gradient norm",
        "gradient norm per parameter",
        "gradient norm per parameter (log colour)",
        "gradient distribution per parameter (min..max, mean ± std, mean)",
        "config → best val loss: a line per run",
        "best val loss against the top hyperparameters",
    ]
    assert "No gradient statistics recorded for: diverged (bad)." in parts.plain_text
    gradients = [
        s
        for s in parts.chart_specs()
        if isinstance(s.get("title"), dict) and "gradient" in s["title"]["text"]
    ]
    assert {s["title"]["subtitle"][0] for s in gradients} == {"healthy"}


def test_empty_store_renders_a_valid_page_that_says_there_are_no_runs(tmp_path: Path) -> None:
    store, diagnosis = open_diagnosed(tmp_path)
    html = render_report(store, diagnosis)
    parts = Parts(html)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert parts.sections == ["no-runs"]
    assert "There are no runs in this store" in parts.plain_text
    assert parts.scripts == [], "no charts, so no 900 kB bundle either"


def test_a_run_with_only_scalars_has_no_gradients_section(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0, 0.5]).finish().write()
    parts = Parts(render_report(*open_diagnosed(tmp_path)))
    assert parts.sections == ["findings", "runs", "curves"]


def test_not_evaluated_rules_are_listed_per_run_in_a_collapsed_block(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "r").scalars("loss", "train", [1.0]).finish().write()
    store = open_store(tmp_path)
    runs = store.sql("SELECT * FROM runs")
    skipped = [NotEvaluated("overfitting", "r", "needs scalars loss/val")]
    html = render_report(store, Diagnosis(runs, [], skipped))
    block = re.search(r"<details>(.*?)</details>", html, re.S)
    assert block is not None, "a closed <details>, without the open attribute"
    assert "overfitting" in block.group(1) and "needs scalars loss/val" in block.group(1)
    assert "1 rule not evaluated" in block.group(1)


@pytest.fixture
def hostile_html(tmp_path: Path) -> str:
    run = RunBuilder(tmp_path, "r&<x>", name=HOSTILE, config={"note": HOSTILE, HOSTILE: 1})
    run.scalars(HOSTILE, "train", [1.0, math.nan]).scalars("loss", HOSTILE, [1.0, 0.5])
    run.tensors(HOSTILE, "grad", [1.0, 0.5])
    run.fail("ValueError", HOSTILE).write()
    store = open_store(tmp_path)
    finding = Finding(
        "nonfinite", Severity.ERROR, "r&<x>", HOSTILE, 2, f"bad {HOSTILE}", HOSTILE, {}
    )
    skipped = NotEvaluated(HOSTILE, "r&<x>", HOSTILE)
    runs = store.sql("SELECT * FROM runs")
    return render_report(store, Diagnosis(runs, [finding], [skipped]), title=HOSTILE)


def test_hostile_strings_from_a_run_never_become_markup(hostile_html: str) -> None:
    assert HOSTILE not in hostile_html
    assert "alert(1)" in hostile_html, "the text is there, escaped"
    parts = Parts(hostile_html)
    # Only the page's own scripts: the table sorter, the bundle, the chart loader, and
    # one JSON block per chart.
    script_types = [attrs.get("type") for attrs, _ in parts.scripts]
    assert script_types.count(None) == 3
    assert all(t in (None, "application/json") for t in script_types)
    text = parts.plain_text
    for shown in (f"note={HOSTILE}", f"{HOSTILE}=1", f"bad {HOSTILE}", f"ValueError: {HOSTILE}"):
        assert shown in text, shown
    assert f"<title>{HOSTILE}" not in hostile_html


def test_hostile_strings_in_chart_json_are_escaped_and_decode_back(hostile_html: str) -> None:
    parts = Parts(hostile_html)
    blocks = [body for attrs, body in parts.scripts if attrs.get("type") == "application/json"]
    assert blocks and all("<" not in b and ">" not in b and "&" not in b for b in blocks)
    decoded = json.dumps(parts.chart_specs())
    assert decoded.count(HOSTILE) >= 3  # metric title, split, parameter


def test_script_json_escapes_what_could_close_a_script() -> None:
    text = script_json({"a": "</script><!-- & \u2028"})
    assert str(text) == '{"a":"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028"}'
    assert json.loads(str(text)) == {"a": "</script><!-- & \u2028"}
    with pytest.raises(ValueError):
        script_json({"x": math.nan})


def test_a_long_series_is_decimated_with_a_note_under_its_chart(tmp_path: Path) -> None:
    values = [math.sin(i / 20) for i in range(2_500)]
    values[100] = 9.0
    values[2_000] = math.inf
    RunBuilder(tmp_path, "r").scalars("loss", "train", values).finish().write()
    parts = Parts(render_report(*open_diagnosed(tmp_path)))
    note = re.search(r"([\d,]+) of 2,500 points drawn \(per-bucket min/max", parts.plain_text)
    assert note is not None
    (spec,) = parts.chart_specs()
    steps = {row["step"] for row in datasets(spec)}
    assert {1, 2_500, 101, 2_001} <= steps
    assert len([r for r in datasets(spec) if "value" in r]) < 2_100


def test_report_covers_only_the_runs_of_a_filtered_diagnosis(tmp_path: Path) -> None:
    trained(tmp_path, "keep", name="kept-run")
    trained(tmp_path, "drop", name="dropped-run")
    store = open_store(tmp_path)
    html = render_report(store, diagnose(store, run_ids=["keep"]))
    assert "kept-run" in html and "dropped-run" not in html
    assert "runs 1" in Parts(html).plain_text


def test_write_report_writes_the_file_and_returns_its_path(tmp_path: Path) -> None:
    RunBuilder(tmp_path / "store", "r").scalars("loss", "train", [1.0, 0.5]).finish().write()
    store, diagnosis = open_diagnosed(tmp_path / "store")
    out = write_report(store, diagnosis, str(tmp_path / "out" / "report.html"), title="t")
    assert out == tmp_path / "out" / "report.html"
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<title>t</title>" in html
    assert [p.name for p in out.parent.iterdir()] == ["report.html"], "no temporary left behind"


def test_a_diagnosis_with_an_empty_frame_still_renders(tmp_path: Path) -> None:
    html = render_report(open_store(tmp_path), Diagnosis(runs=pl.DataFrame()))
    assert "There are no runs" in Parts(html).plain_text
