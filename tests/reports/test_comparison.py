"""Run comparison: varying hyperparameters against each run's best validation metric."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from analysis import open_store
from reports import comparison
from reports.data import _VAL_METRICS
from store.metrics import default_goal
from tests.builders import RunBuilder


def _runs(configs: dict[str, dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": list(configs),
            "name": [f"name-{r}" for r in configs],
            "status": ["finished"] * len(configs),
            "config": [json.dumps(c) for c in configs.values()],
        }
    )


def _val(rows: list[tuple[str, str, float, float, float]]) -> pl.DataFrame:
    """The frame ``reports.data`` reads; each metric's goal from its name."""
    cols = ["run_id", "metric", "lowest", "highest", "final", "goal"]
    return pl.DataFrame([(*r, default_goal(r[1])) for r in rows], schema=cols, orient="row")


def test_best_is_lowest_for_losses_and_highest_otherwise() -> None:
    metrics = comparison.val_metrics(
        _val([("a", "acc", 0.5, 0.9, 0.8), ("a", "loss", 0.2, 1.5, 0.3), ("a", "mse", 1, 4, 2)])
    )
    assert [(m.name, m.best, m.final) for m in metrics["a"]] == [
        ("loss", 0.2, 0.3),
        ("acc", 0.9, 0.8),
        ("mse", 1, 2),
    ]


def test_best_follows_the_metric_goal_of_each_run(tmp_path: Path) -> None:
    """Bits per character fall (the report called the highest 'best'); a metric the run
    defined as rising is best at its highest; one without a goal has no best."""
    for run_id, goals in (("chars", {"score": "max"}), ("other", {})):
        run = RunBuilder(tmp_path, run_id)
        for name, goal in goals.items():
            run.event("metric_defined", {"name": name, "goal": goal}, step=0)
        run.scalars("bpc", "val", [3.0, 1.2, 1.4], steps=[10, 20, 30])
        run.scalars("score", "val", [0.2, 0.9, 0.5], steps=[10, 20, 30])
        run.finish().write()
    with open_store(tmp_path) as store:
        metrics = comparison.val_metrics(store.sql(_VAL_METRICS))
    assert [(m.name, m.best, m.goal) for m in metrics["chars"]] == [
        ("bpc", 1.2, "min"),
        ("score", 0.9, "max"),
    ]
    assert [(m.name, m.best) for m in metrics["other"]] == [("bpc", 1.2), ("score", None)]
    runs = _runs({"chars": {"lr": 1}, "other": {"lr": 2}})
    c = comparison.compare(runs, metrics)
    assert c is not None and c.metric == "bpc" and c.lower_is_better
    assert [r.best for r in c.rows] == [1.2, 1.2]


def test_only_varying_config_keys_are_compared_against_the_primary_metric() -> None:
    runs = _runs(
        {
            "a": {"lr": 0.1, "seed": 0, "opt": "sgd"},
            "b": {"lr": 0.01, "seed": 0, "opt": "adam"},
            "c": {"lr": 0.001, "seed": 0},
        }
    )
    val = comparison.val_metrics(
        _val([("a", "loss", 0.5, 1, 0.6), ("b", "loss", 0.2, 1, 0.2), ("c", "acc", 0.1, 0.7, 0.7)])
    )
    c = comparison.compare(runs, val)
    assert c is not None
    assert c.metric == "loss" and c.lower_is_better
    assert c.params == ["lr", "opt"]
    assert [(r.run_id, r.values, r.best) for r in c.rows] == [
        ("a", ["0.1", "sgd"], 0.5),
        ("b", ["0.01", "adam"], 0.2),
        ("c", ["0.001", ""], None),
    ]
    # Runs without the metric are in the table, not in the chart; numbers stay numbers.
    assert set(c.points["run"]) == {"name-a (a)", "name-b (b)"}
    lr = c.points.filter(pl.col("hyperparameter") == "lr").sort("x")
    assert lr["x"].to_list() == [0.01, 0.1]
    assert c.points.filter(pl.col("hyperparameter") == "opt")["x"].null_count() == 2


def test_nothing_to_compare_with_one_run_or_no_validation_metric() -> None:
    assert comparison.compare(_runs({"a": {"lr": 1}}), {}) is None
    assert comparison.compare(_runs({"a": {"lr": 1}, "b": {"lr": 2}}), {}) is None


def test_config_that_is_not_an_object_still_compares() -> None:
    assert comparison.config('["x"]') == {"config": ["x"]}
    assert comparison.config("not json") == {"config": "not json"}
    assert comparison.config(None) == {}
