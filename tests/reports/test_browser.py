"""The report in a real browser: offline, every chart drawn, no errors, hostile names inert.

Headless Chromium opens the written file from ``file://`` with every non-local
request aborted and counted (``tests.reports.browser``). A screenshot of the whole
page is left in the test's temporary directory for whoever debugs a failure.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis import diagnose, open_store
from reports import write_report
from tests.builders import RunBuilder
from tests.reports.browser import Opened, open_report
from tests.reports.pages import HOSTILE, Parts, named

HOSTILE_NAME = "<img src=x onerror=alert(2)>"
HOSTILE_CONFIG = "<b>bold</b><script>alert(3)</script>"
LONG_ID = "lr-large-20231114-221320-0a1b2c3d"
PARAMS = ("conv.weight", "conv.bias", "fc.weight", "fc.bias")


def _healthy(
    root: Path, run_id: str, *, lr: float, start: float, steps: int = 120, name: str = ""
) -> None:
    run = RunBuilder(root, run_id, name=name or run_id, config={"lr": lr, "batch": 32}, start=start)
    loss = [2.0 * math.exp(-4 * lr * i) + 0.1 for i in range(steps)]
    run.scalars("loss", "train", loss).scalars("acc", "train", [1 - v / 2.2 for v in loss])
    val = list(range(20, steps + 1, 20))
    epochs = list(range(len(val)))
    run.scalars("loss", "val", [loss[s - 1] * 1.05 for s in val], steps=val, epochs=epochs)
    run.scalars("acc", "val", [0.6 + 0.05 * e for e in epochs], steps=val, epochs=epochs)
    run.scalars("lr", "train", [lr] * steps)
    for depth, p in enumerate(PARAMS):
        scale = 0.1 * (depth + 1)
        run.tensors(p, "grad", [scale * (1 + 0.1 * math.sin(i)) for i in range(steps)])
        run.tensors(p, "weight", [1.0 + 0.001 * i for i in range(steps)])
        run.tensors(p, "update", [2e-3 * scale] * steps)
    for m, t in (("conv", "Conv2d"), ("relu", "ReLU"), ("fc", "Linear")):
        run.activations(m, t, list(range(10, steps + 1, 10)), std=0.5, zero_frac=0.3)
    run.system([0.02] * steps, [0.005] * steps)
    run.finish().write()


def _probe(root: Path, start: float) -> None:
    """A failed run whose name, config, metric and messages are HTML and script."""
    run = RunBuilder(
        root, "probe", name=HOSTILE_NAME, config={"note": HOSTILE_CONFIG, "lr": 5.0}, start=start
    )
    run.scalars(HOSTILE, "train", [1.0, 0.8, math.nan, 0.5])
    run.scalars("loss", "train", [2.0, 1.5, math.nan, math.inf])
    run.scalars("loss", "val", [1.9], steps=[2], epochs=[0])
    run.tensors(HOSTILE, "grad", [1.0, 2.0, math.inf, math.nan])
    run.fail("FloatingPointError", HOSTILE).write()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Opened]:
    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "runs"
    _healthy(root, "lr-small", lr=0.01, start=1_700_000_000.0)
    # An id as `telemetry` names runs: "name (id)" is too long for a legend beside a chart.
    _healthy(root, LONG_ID, name="lr-large", lr=0.05, start=1_700_010_000.0)
    _probe(root, start=1_700_020_000.0)
    store = open_store(root)
    out = write_report(store, diagnose(store), tmp / "report.html", title=HOSTILE)
    return out, open_report(out, tmp / "report.png")


def test_the_page_makes_no_network_request(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    assert seen.blocked_requests == []


def test_the_page_loads_without_console_or_script_errors(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    assert seen.console_errors == [] and seen.page_errors == []


def test_every_chart_container_holds_a_drawn_chart(synthetic: tuple[Path, Opened]) -> None:
    out, seen = synthetic
    specs = Parts(out.read_text(encoding="utf-8")).chart_specs()
    assert len(seen.charts) == len(specs) >= 10
    assert [c for c in seen.charts if not c["drawn"]] == []


def test_findings_table_is_present_and_links_to_existing_charts(
    synthetic: tuple[Path, Opened],
) -> None:
    _, seen = synthetic
    assert seen.findings_tables >= 1
    assert seen.links, "findings link to the chart that shows their evidence"
    assert [target for target, exists in seen.links if not exists] == []


def test_hostile_strings_render_as_text_and_never_run(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    assert seen.dialogs == [], "no alert() fired"
    for shown in (HOSTILE, HOSTILE_NAME, HOSTILE_CONFIG):
        assert shown in seen.text, shown


def test_the_runs_table_sorts_by_a_clicked_column(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    ascending, descending = seen.sorted_names
    assert ascending == sorted(ascending, key=str.lower) and len(ascending) == 3
    assert descending == ascending[::-1]


def test_a_screenshot_is_left_for_debugging(synthetic: tuple[Path, Opened]) -> None:
    out, _ = synthetic
    shot = out.with_name("report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_real_small_training_renders_offline_without_errors(tmp_path: Path) -> None:
    from telemetry import demo

    scenario = demo.Scenario(
        "tiny", "cnn", "adam", 1e-3, epochs=2, train_subset=256, export_bench=False
    )
    demo.train(scenario, tmp_path / "runs", data=demo.load_digits_tensors())
    store = open_store(tmp_path / "runs")
    out = write_report(store, diagnose(store), tmp_path / "report.html")
    seen = open_report(out, tmp_path / "report.png")
    assert seen.blocked_requests == [] and seen.console_errors == [] and seen.page_errors == []
    assert seen.charts and all(c["drawn"] for c in seen.charts)
    assert "Curves" in seen.text and "Gradients" in seen.text


def test_a_missing_chromium_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.reports.browser import CHROMIUM_ENV, chromium

    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "no-such-chromium"))
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()


def test_findings_are_open_and_every_other_section_is_collapsed(
    synthetic: tuple[Path, Opened],
) -> None:
    _, seen = synthetic
    assert seen.sections_open.pop("findings") is True
    assert seen.sections_open.pop("nan-origin", True) is True, "a NaN origin is a finding too"
    assert {"runs", "curves", "gradients"} <= set(seen.sections_open)
    assert [s for s, is_open in seen.sections_open.items() if is_open] == []


def test_the_page_is_short_collapsed_and_bounded_expanded(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    # Three runs: findings open, every other section one summary line.
    assert 0 < seen.height <= 2_600, seen.height
    # Expanded: one chart per metric for all runs, small multiples for the rest (a
    # chart per run and metric, each 600 px wide and alone on its row: 12,859 px; each
    # run's own block of 360 px charts: 9,062 px). A row per quantity with a 180 px
    # chart per run, step times overlaid: 6,775 px; the runs' lr differs, so what
    # mattered adds its table and two charts (~1,150 px).
    assert seen.height < seen.height_open <= 8_300, seen.height_open


def test_the_table_of_contents_stays_in_view_while_scrolling(
    synthetic: tuple[Path, Opened],
) -> None:
    _, seen = synthetic
    assert seen.toc_position in ("sticky", "fixed")
    assert 0 <= seen.toc_top_after_scroll < 5, "at the top of the viewport at the page's end"


def test_an_evidence_link_opens_its_collapsed_section(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    assert seen.evidence_opens


def test_no_legend_is_cut_off(synthetic: tuple[Path, Opened]) -> None:
    _, seen = synthetic
    assert seen.legends, "the overlays have run legends"
    assert [g["chart"] for g in seen.legends if not g["inside"]] == []
    cut = [(g["chart"], t) for g in seen.legends for t in g["labels"] if t.endswith("…")]
    assert cut == []


def test_every_metric_has_one_chart_with_every_run_that_logged_it(
    synthetic: tuple[Path, Opened],
) -> None:
    out, _ = synthetic
    store = open_store(out.parent / "runs")
    logged = store.sql("SELECT DISTINCT run_id, name FROM scalars")
    names = {"lr-small": "lr-small", LONG_ID: "lr-large", "probe": HOSTILE_NAME}
    expected: dict[str, set[str]] = {}
    for run_id, metric in logged.iter_rows():
        title = "learning rate" if metric == "lr" else metric
        expected.setdefault(f"{title}: all runs", set()).add(names[run_id])
    drawn = {
        spec["title"]: {row["run"] for row in named(spec) if "run" in row}
        for spec in Parts(out.read_text(encoding="utf-8")).chart_specs()
        if str(spec.get("title", "")).endswith(": all runs")
    }
    assert drawn == expected
