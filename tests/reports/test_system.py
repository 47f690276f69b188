"""Step timing for the page: data wait and compute as two series, throughput as a third."""

from __future__ import annotations

import math

import polars as pl

from reports import system


def _rows(**cols: list[float | None]) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base: dict[str, list[float | None]] = {
        "step_time_s": [0.1] * n,
        "data_time_s": [0.02] * n,
        "compute_time_s": [0.08] * n,
        "samples_per_s": [640.0] * n,
    }
    schema = {"step": pl.Int64, **dict.fromkeys(base, pl.Float64)}
    return pl.DataFrame({"step": list(range(1, n + 1)), **base, **cols}, schema=schema)


def test_step_time_splits_into_data_wait_and_compute() -> None:
    s = system.summarize(_rows(step_time_s=[0.1, 0.2]))
    assert s is not None and s.time is not None and s.throughput is not None
    got = sorted(s.time.points.rows())
    assert got == [
        ("compute", 1, 0.08),
        ("compute", 2, 0.08),
        ("data wait", 1, 0.02),
        ("data wait", 2, 0.02),
    ]
    assert s.throughput.points["samples_per_s"].to_list() == [640.0, 640.0]


def test_compute_is_derived_when_missing_and_nan_is_a_marker() -> None:
    s = system.summarize(
        _rows(step_time_s=[0.1, 0.3], compute_time_s=[None, None], data_time_s=[0.02, math.nan])
    )
    assert s is not None and s.time is not None
    compute = s.time.points.filter(pl.col("part") == "compute")
    assert compute["seconds"].to_list() == [0.08]
    assert sorted(s.time.markers.select("part", "step", "label").rows()) == [
        ("compute", 2, "NaN"),
        ("data wait", 2, "NaN"),
    ]


def test_no_rows_no_section() -> None:
    assert system.summarize(_rows(step_time_s=[]).head(0)) is None
