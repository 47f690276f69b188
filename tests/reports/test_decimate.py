"""decimate: long series shrink to per-bucket min/max, keeping what a reader looks for."""

from __future__ import annotations

import math
import random
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from reports.decimate import Decimated, decimate, decimate_sql, decimated, note


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


# -- decimate_sql: the same rows, kept by the database ----------------------------------------


def _random_series(rng: random.Random, n: int, key: str | None) -> list[tuple[Any, ...]]:
    """``n`` rows of one series: ties, repeated values, and NaN, +/-Inf and null sprinkled in."""
    special = [math.nan, math.inf, -math.inf, None, 0.0, -0.0]
    rows = []
    for step in range(n):
        roll = rng.random()
        if roll < 0.03:
            y = rng.choice(special)
        elif roll < 0.2:
            y = float(rng.randint(-3, 3))  # ties within a bucket: the first one wins
        else:
            y = rng.gauss(0, 1)
        rows.append((key, step * rng.choice((1, 1, 2)), rng.random(), y))
    return rows


def _sql_decimate(
    df: pl.DataFrame, *, by: list[str], max_points: int | str, max_nonfinite: int | None = None
) -> Decimated:
    sql, params = decimate_sql(
        "SELECT * FROM frame",
        x="step",
        y="value",
        by=by,
        ties=["seq"],
        max_points=max_points,
        max_nonfinite=max_nonfinite,
    )
    con = duckdb.connect()
    con.register("frame", df)
    return decimated(con.sql(sql, params=params).pl(), by=by)


@pytest.mark.parametrize("seed", range(12))
def test_sql_keeps_exactly_the_rows_polars_keeps(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice((0, 1, 3, 40, 41, 199, 1_000, 5_003)) for _ in range(rng.randint(1, 5))]
    keys = ["train", "val", None, "b", "a"]
    rows = [r for key, n in zip(keys, lengths, strict=False) for r in _random_series(rng, n, key)]
    rng.shuffle(rows)
    schema = {"split": pl.String, "step": pl.Int64, "seq": pl.Float64, "value": pl.Float64}
    # Rows of equal step come in seq order, as the report's queries read them.
    df = pl.DataFrame(rows, schema=schema, orient="row").sort("step", "seq")
    max_points = rng.choice((4, 5, 40, 100, 2_000))
    for by in (["split"], []):
        expected = decimate(df, x="step", y="value", by=by, max_points=max_points)
        got = _sql_decimate(df, by=by, max_points=max_points)
        assert got.total == expected.total and got.cut == 0
        assert_frame_equal(got.frame, expected.frame)
        # With a cap: the same rows, but only each series' first non-finite ones.
        cap = rng.choice((1, 3, 50))
        bad = ~pl.col("value").is_finite().fill_null(False)
        nth = bad.cast(pl.Int64).cum_sum().over(by or pl.lit(0))
        capped = expected.frame.filter(~bad | (nth <= cap))
        got = _sql_decimate(df, by=by, max_points=max_points, max_nonfinite=cap)
        assert got.total == expected.total
        assert got.cut == expected.frame.height - capped.height
        assert_frame_equal(got.frame, capped)


def test_each_series_can_bring_its_own_budget() -> None:
    rng = random.Random(7)
    rows = _random_series(rng, 3_000, "a") + _random_series(rng, 3_000, "b")
    df = pl.DataFrame(rows, schema=["split", "step", "seq", "value"], orient="row")
    df = df.sort("step", "seq")
    budgets = df.with_columns(pl.when(pl.col("split") == "a").then(50).otherwise(400).alias("pts"))
    got = _sql_decimate(budgets, by=["split"], max_points="pts").frame.drop("pts")
    expected = [
        decimate(df.filter(pl.col("split") == s), x="step", y="value", max_points=n).frame
        for s, n in (("a", 50), ("b", 400))
    ]
    assert_frame_equal(got, pl.concat(expected))


def test_nonfinite_rows_beyond_the_cap_are_counted_not_returned() -> None:
    values = [1.0] * 10 + [math.nan] * 5_000 + [2.0]
    df = pl.DataFrame({"step": range(len(values)), "seq": range(len(values)), "value": values})
    out = _sql_decimate(df, by=[], max_points=100, max_nonfinite=20)
    kept = out.frame["value"]
    assert kept.is_nan().sum() == 20 and out.frame["step"].filter(kept.is_nan()).max() == 29
    assert (out.total, out.cut) == (5_011, 4_980)
    assert out.frame["step"].to_list()[-1] == 5_010, "the last row is kept"


def test_column_names_are_checked_before_they_reach_the_query() -> None:
    with pytest.raises(ValueError, match="plain column name"):
        decimate_sql("SELECT 1", x="step; DROP TABLE t", y="value")
    with pytest.raises(ValueError, match="at least 4"):
        decimate_sql("SELECT 1", x="step", y="value", max_points=3)
