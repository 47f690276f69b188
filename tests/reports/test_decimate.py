"""decimate: long series shrink to per-bucket min/max, keeping what a reader looks for."""

from __future__ import annotations

import math

import polars as pl
import pytest

from reports.decimate import decimate, note


def _series(n: int, **overrides: float) -> pl.DataFrame:
    values = [math.sin(i / 37) for i in range(n)]
    for step, v in overrides.items():
        values[int(step[1:])] = v
    return pl.DataFrame({"step": list(range(n)), "value": values})


def test_short_series_are_kept_whole_and_sorted() -> None:
    df = pl.DataFrame({"step": [3, 1, 2], "value": [0.3, 0.1, math.nan]})
    out = decimate(df, x="step", y="value", max_points=10)
    assert out.frame["step"].to_list() == [1, 2, 3]
    assert (out.drawn, out.total) == (3, 3)
    assert note(out.drawn, out.total) is None


def test_long_series_keeps_first_last_extrema_and_every_nonfinite_point() -> None:
    df = _series(10_000, s4321=50.0, s777=-50.0, s5000=math.nan, s6000=math.inf, s6001=-math.inf)
    out = decimate(df, x="step", y="value", max_points=200)
    kept = set(out.frame["step"].to_list())
    assert {0, 9_999, 4321, 777, 5000, 6000, 6001} <= kept
    assert out.total == 10_000
    assert out.drawn <= 200 + 3  # the budget, plus the non-finite points it never drops
    assert out.frame["step"].is_sorted()


def test_every_bucket_keeps_its_own_min_and_max() -> None:
    # A saw-tooth: every 100 steps has one peak and one trough, at known places.
    values = [1.0 if i % 100 == 17 else (-1.0 if i % 100 == 63 else 0.0) for i in range(10_000)]
    df = pl.DataFrame({"step": list(range(10_000)), "value": values})
    out = decimate(df, x="step", y="value", max_points=202)  # 100 buckets of 100 steps
    kept = out.frame["value"].to_list()
    assert kept.count(1.0) == 100 and kept.count(-1.0) == 100


def test_series_are_decimated_independently() -> None:
    long = _series(5_000).with_columns(pl.lit("train").alias("split"))
    short = pl.DataFrame({"step": [10, 20], "value": [1.0, 2.0], "split": ["val", "val"]})
    out = decimate(pl.concat([long, short]), x="step", y="value", by=["split"], max_points=100)
    counts = dict(out.frame.group_by("split").len().rows())
    assert counts["val"] == 2
    assert counts["train"] <= 100
    assert out.total == 5_002


def test_null_keys_form_their_own_series() -> None:
    df = pl.DataFrame({"step": [1, 2, 1], "value": [1.0, 2.0, 3.0], "split": [None, None, "a"]})
    out = decimate(df, x="step", y="value", by=["split"], max_points=10)
    assert out.drawn == 3


def test_note_says_how_many_points_were_drawn_from_how_many() -> None:
    assert note(1_998, 120_000) == (
        "1,998 of 120,000 points drawn "
        "(per-bucket min/max; first, last and every non-finite point kept)"
    )


def test_too_small_a_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        decimate(_series(10), x="step", y="value", max_points=3)
