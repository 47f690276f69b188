"""``telemetry runs``: one row per run with best metrics, --where over config, --sort, --limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from telemetry.cli import main
from telemetry.commands.runs import direction
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


def test_metric_direction_comes_from_the_words_of_its_name() -> None:
    assert direction("loss") == direction("val_loss") == direction("mse") == "min"
    assert direction("acc") == direction("top1_accuracy") == direction("f1") == "max"
    assert direction("lr") is None and direction("glossary") is None
