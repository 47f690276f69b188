"""The model inputs section: each feature's typical mean ± std and range, capped, linked from
the finding of unnormalized_inputs, absent for a run that recorded no inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from analysis import diagnose, open_store
from reports import data, inputs, render_report
from store.schema import Stream
from tests.builders import RunBuilder
from tests.reports.pages import Parts, axis_labels, open_undiagnosed, trained


def recorded(
    run: RunBuilder,
    steps: Sequence[int],
    means: Sequence[float],
    stds: Sequence[float],
    *,
    layout: str = "features",
    lo: float | None = None,
    hi: float | None = None,
) -> RunBuilder:
    """``inputs`` rows of one feature (channel) each per step, as the collector writes them.

    ``lo`` and ``hi`` default to mean -/+ 3 std; step ``s`` shifts every mean (not the
    extremes) by ``s / 1000``, so the median over steps is the middle step's.
    """
    n = len(means)
    for step in steps:
        shift = step / 1000
        run._add(
            Stream.INPUTS,
            step,
            None,
            {
                "index": list(range(n)),
                "layout": [layout] * n,
                "numel": [64] * n,
                "mean": [m + shift for m in means],
                "std": list(stds),
                "min": [
                    lo if lo is not None else m - 3 * s for m, s in zip(means, stds, strict=True)
                ],
                "max": [
                    hi if hi is not None else m + 3 * s for m, s in zip(means, stds, strict=True)
                ],
            },
        )
    return run


def _rows(n: int, *, std: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "layout": ["features"] * n,
            "index": list(range(n)),
            "mean": [0.0] * n,
            "std": [std] * n,
            "lo": [-3.0] * n,
            "hi": [3.0] * n,
            "steps": [5] * n,
        }
    )


def test_each_feature_is_its_median_mean_and_std_and_its_extremes(tmp_path: Path) -> None:
    run = recorded(RunBuilder(tmp_path, "r"), [1, 2, 3], [0.0, 10.0], [1.0, 2.0])
    run.finish().write()
    store = open_store(tmp_path)
    got = inputs.read(store, "r")
    assert got is not None and got.layout == "features" and got.noun == "feature"
    rows = got.features.select("index", "mean", "std", "lo", "hi", "steps").rows()
    assert rows == [(0, 0.002, 1.0, -3.0, 3.0, 3), (1, 10.002, 2.0, 4.0, 16.0, 3)]
    assert got.note is None and not got.wide


def test_only_the_first_features_are_drawn_and_the_rest_are_counted() -> None:
    got = inputs.summarize(_rows(inputs.MAX_FEATURES + 36))
    assert got is not None
    assert got.features["index"].to_list() == list(range(inputs.MAX_FEATURES))
    assert got.total == inputs.MAX_FEATURES + 36
    assert got.note == "The first 64 of 100 features are drawn (36 left out)."


def test_spreads_a_hundred_times_apart_are_wide_and_constant_features_do_not_count() -> None:
    rows = _rows(3).with_columns(pl.Series("std", [0.01, 1.0, 0.0]))
    got = inputs.summarize(rows)
    assert got is not None and got.wide
    narrow = inputs.summarize(_rows(3).with_columns(pl.Series("std", [0.1, 1.0, 0.0])))
    assert narrow is not None and not narrow.wide


def test_a_non_finite_statistic_is_left_null_not_drawn() -> None:
    rows = _rows(2).with_columns(pl.Series("hi", [float("inf"), 3.0]))
    got = inputs.summarize(rows)
    assert got is not None
    assert got.features["hi"].to_list() == [None, 3.0]


def test_no_inputs_recorded_reads_as_none(tmp_path: Path) -> None:
    trained(tmp_path)
    assert inputs.read(open_store(tmp_path), "r1") is None


def test_raw_pixels_draw_the_inputs_chart_that_the_finding_links_to(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "cnn", name="raw-pixels")
    run.scalars("loss", "train", [2.0 - 0.01 * i for i in range(20)])
    recorded(run, [1, 5, 9], [127.0, 120.0, 110.0], [74.0] * 3, layout="channels", lo=0, hi=255)
    run.finish().write()
    trained(tmp_path, "plain", name="plain")
    store = open_store(tmp_path)
    diagnosis = diagnose(store)
    assert [f.rule for f in diagnosis.findings if f.run_id == "cnn"] == ["unnormalized_inputs"]
    loaded = {r.run_id: r for r in data.load(store, diagnosis).per_run}
    assert loaded["plain"].inputs is None
    html = render_report(store, diagnosis)
    parts = Parts(html)
    assert "inputs" in parts.sections
    charts = [s for s in parts.chart_specs() if "model input" in str(s.get("title"))]
    assert len(charts) == 1, "one input chart: the run without inputs has none"
    assert "model input per channel" in str(charts[0]["title"])
    drawn = [a["data-chart"] for a, body in parts.scripts if "model input" in body]
    links = [a["href"] for t, a in parts.tags if t == "a" and a.get("class") == "evidence"]
    assert links == [f"#{drawn[0]}"]
    text = parts.plain_text
    assert "Evidence: model input per channel" in text
    assert "No input statistics recorded for: plain." in text


def test_a_run_without_inputs_has_no_inputs_section(tmp_path: Path) -> None:
    trained(tmp_path)
    store = open_store(tmp_path)
    assert "inputs" not in Parts(render_report(store, diagnose(store))).sections


def test_features_on_scales_far_apart_get_a_std_panel_on_a_log_axis(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path, "table")
    recorded(run, [1, 2], [250_000.0, 0.5, 0.1], [80_000.0, 0.3, 0.05]).finish().write()
    store, diagnosis = open_undiagnosed(tmp_path)
    [spec] = [s for s in Parts(render_report(store, diagnosis)).chart_specs() if "vconcat" in s]
    assert "model input per feature" in str(spec["title"])
    assert spec["vconcat"][1]["encoding"]["y"]["scale"] == {"type": "log"}
    labels = axis_labels(spec)
    assert ["0", "1", "2"] in labels, "a panel per feature index"
