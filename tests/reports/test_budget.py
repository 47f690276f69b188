"""A page's budget, shared by the runs it charts."""

from __future__ import annotations

from dataclasses import fields

from reports.budget import FLOOR, Budget


def test_one_run_gets_the_whole_budget() -> None:
    assert Budget().share(1) == Budget()


def test_runs_share_the_budget_down_to_a_floor() -> None:
    full, shared = Budget(), Budget().share(4)
    assert shared.curve_points == full.curve_points // 4
    many = Budget().share(1_000)
    for f in fields(Budget):
        assert getattr(many, f.name) == getattr(FLOOR, f.name), f.name


def test_band_buckets_follow_the_line_points_within_10_and_100() -> None:
    assert Budget().band_buckets == 100
    assert FLOOR.band_buckets == 10
