"""One direction per metric everywhere: the ``metric_goals`` view, and the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import diagnose, open_store
from collector import Collector
from store.errors import ConfigError
from tests.analysis import cases


def _goals(root: Path, *, runs_only: bool = False) -> dict[tuple[str, str], tuple[str, bool]]:
    with open_store(root, runs_only=runs_only) as store:
        frame = store.sql("SELECT name, goal, defined FROM metric_goals")
    return {n: (g, d) for n, g, d in frame.iter_rows()}


def test_defined_goals_win_over_the_names_words(tmp_path: Path) -> None:
    with Collector(tmp_path, name="chars") as tel:
        tel.define_metric("bpc/val", goal="min")  # 'name/split' as log() takes it
        tel.define_metric("score", goal="max")
        tel.define_metric("acc", goal="max")
        tel.define_metric("acc", goal="min")  # the latest wins
        for step in range(3):
            tel.log({"bpc/val": 2.0 - step / 10, "lr": 0.1, "acc/val": 0.5, "f1": 0.4}, step=step)
    expected = {
        "bpc": ("min", True),
        "score": ("max", True),  # defined, never logged
        "acc": ("min", True),
        "f1": ("max", False),
        "lr": (None, False),
    }
    assert _goals(tmp_path) == expected
    assert _goals(tmp_path, runs_only=True) == expected  # from the writer's digest


@pytest.mark.parametrize(
    ("name", "goal", "says"),
    [
        ("", "min", "metric name"),
        (3, "min", "metric name"),
        ("bpc/", "min", "metric name"),
        ("bpc", "lower", "goal must be one of"),
        ("bpc", None, "goal must be one of"),
    ],
)
def test_define_metric_refuses_bad_input(
    tmp_path: Path, name: object, goal: object, says: str
) -> None:
    with Collector(tmp_path, name="r") as tel, pytest.raises(ConfigError, match=says):
        tel.define_metric(name, goal=goal)  # type: ignore[arg-type]
    assert _goals(tmp_path) == {}


def test_a_rule_never_reads_a_metric_against_its_goal(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).event(
        "metric_defined", {"name": "loss", "goal": "max"}, step=0
    ).write()
    with open_store(tmp_path) as store:
        result = diagnose(store)
    assert not [f for f in result.findings if f.rule in ("overfitting", "early_stopping")]
    reasons = {n.rule: n.reason for n in result.not_evaluated}
    assert (
        "reads 'loss' as a metric that should fall, but its goal is 'max'"
        in (reasons["overfitting"])
    )


def test_a_metric_override_of_the_opposite_goal_is_not_evaluated(tmp_path: Path) -> None:
    cases.overfitting(tmp_path).write()
    with open_store(tmp_path) as store:
        result = diagnose(store, params={"overfitting": {"metric": "acc"}})
    reasons = {n.rule: n.reason for n in result.not_evaluated}
    assert (
        "reads 'acc' as a metric that should fall, but its goal is 'max'"
        in (reasons["overfitting"])
    )
    # a metric of the same goal, or one the words cannot place, is read as the rule reads it
    for metric in ("nll", "score"):
        with open_store(tmp_path) as store:
            result = diagnose(store, params={"overfitting": {"metric": metric}})
        reason = {n.rule: n.reason for n in result.not_evaluated}["overfitting"]
        assert reason.startswith(f"needs at least 4 rows of scalars:{metric}/val"), reason
