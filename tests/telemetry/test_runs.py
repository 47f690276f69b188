"""``telemetry runs``: one row per run with best metrics, --where over config, --sort, --limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from store.metrics import default_goal
from telemetry.cli import main
from tests.builders import RunBuilder

SWEEP = [("a", 1e-2, "sgd", 0.80), ("b", 1e-3, "adam", 0.92), ("c", 1e-4, "adam", 0.85)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for i, (run_id, lr, opt, acc) in enumerate(SWEEP):
        run = RunBuilder(root, run_id, config={"lr": lr, "optim": {"name": opt}}, start=1e9 + i)
        run.scalars("loss", "val", [1.0, 0.5 + i / 10, 0.7], steps=[10, 20, 30])
        run.scalars("acc", "val", [acc - 0.1, acc, acc - 0.05], steps=[10, 20, 30])
        run.scalars("lr", "train", [lr] * 30)
        (run.fail() if run_id == "c" else run.finish()).write()
    return root


def _runs(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["runs", str(root), *args])
    return result.exit_code, result.output


def _json(root: Path, *args: str) -> list[dict[str, object]]:
    code, out = _runs(root, *args, "--format", "json")
    assert code == 0, out
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def test_runs_lists_status_steps_best_metrics_and_config(sweep: Path) -> None:
    rows = _json(sweep)
    assert [r["run_id"] for r in rows] == ["a", "b", "c"]  # started first, first
    b = rows[1]
    assert b["status"] == "finished" and b["steps"] == 30
    assert b["best_acc_val"] == 0.92 and b["best_loss_val"] == 0.5 + 1 / 10
    assert "best_lr_train" not in b  # no direction: no "best"
    assert json.loads(str(b["config"])) == {"lr": 1e-3, "optim": {"name": "adam"}}
    assert rows[2]["status"] == "failed"
    code, out = _runs(sweep)
    assert code == 0 and out.splitlines()[0].split()[:5] == [
        "run_id",
        "name",
        "status",
        "steps",
        "duration_s",
    ]


def test_where_reads_config_values_typed(sweep: Path) -> None:
    assert [r["run_id"] for r in _json(sweep, "--where", "config.lr < 1e-3")] == ["c"]
    assert [r["run_id"] for r in _json(sweep, "--where", "config.lr <= 1e-3")] == ["b", "c"]
    adam = _json(sweep, "--where", "config.optim.name = 'adam' AND status = 'finished'")
    assert [r["run_id"] for r in adam] == ["b"]
    # 'config.lr' inside a string literal is text, not a config value
    assert _json(sweep, "--where", "name = 'config.lr'") == []


def test_sort_and_limit(sweep: Path) -> None:
    best = _json(sweep, "--sort", "-best_acc_val", "--limit", "2")
    assert [r["run_id"] for r in best] == ["b", "c"]
    assert [r["run_id"] for r in _json(sweep, "--sort", "config.lr")] == ["c", "b", "a"]
    assert [r["run_id"] for r in _json(sweep, "--sort", "status,-config.lr")] == ["c", "a", "b"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--where", "config.lr < 1; DROP VIEW runs"], "not statements"),
        (["--where", "status = 'x') UNION (SELECT 1"], "is not one SQL expression"),
        (["--where", "nope > 1"], "columns: run_id, name, status"),
        (["--where", "config.momentum > 0"], "no run has config.momentum; config keys: lr, optim"),
        (["--sort", "nope"], "no such column; columns: run_id"),
        (["--sort", "steps desc"], "expected a column name"),
        (["--limit", "0"], "0 is not in the range"),
    ],
)
def test_bad_filters_are_clear_errors(sweep: Path, args: list[str], says: str) -> None:
    code, out = _runs(sweep, *args)
    assert code == 2, out
    assert says in out


def test_metric_goal_comes_from_the_words_of_its_name() -> None:
    assert default_goal("loss") == default_goal("val_loss") == default_goal("mse") == "min"
    assert default_goal("bpc") == default_goal("nll") == default_goal("ppl") == "min"
    assert default_goal("acc") == default_goal("top1_accuracy") == default_goal("f1") == "max"
    assert default_goal("r2") == default_goal("recall") == default_goal("precision") == "max"
    assert default_goal("lr") is None and default_goal("glossary") is None


def test_best_columns_follow_each_runs_metric_goal(tmp_path: Path) -> None:
    """bpc falls (a known word); 'score' rises where the run defined it, and has no best
    value where no run did; a run may define a metric against its name's words."""
    for i, (run_id, goals) in enumerate(
        [("chars", {"score": "max"}), ("odd", {"bpc": "max"}), ("plain", {})]
    ):
        run = RunBuilder(tmp_path, run_id, start=1e9 + i)
        for name, goal in goals.items():
            run.event("metric_defined", {"name": name, "goal": goal}, step=0)
        run.scalars("bpc", "val", [3.0, 1.5, 2.0], steps=[10, 20, 30])
        run.scalars("score", "val", [0.1, 0.9, 0.5], steps=[10, 20, 30])
        run.finish().write()
    rows = {r["run_id"]: r for r in _json(tmp_path)}
    assert rows["chars"]["best_bpc_val"] == 1.5 and rows["chars"]["best_score_val"] == 0.9
    assert rows["odd"]["best_bpc_val"] == 3.0  # its own definition wins
    assert rows["plain"]["best_bpc_val"] == 1.5 and rows["plain"]["best_score_val"] is None
