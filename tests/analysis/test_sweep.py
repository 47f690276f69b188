"""``analysis.sweep`` and ``telemetry sweep`` on sweeps whose truth the test builds."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis import open_store
from analysis import sweep as sweep_module
from analysis.sweep import sweep
from telemetry.cli import main
from tests.builders import RunBuilder


def _lr_sweep(root: Path, runs: int = 16, seed: int = 0) -> None:
    """Only the learning rate matters (a lower one ends lower); ``dummy`` is noise and
    ``opt.name`` is assigned at random."""
    rng = random.Random(seed)
    for i in range(runs):
        lr = 10 ** rng.uniform(-4, -1)
        best = 0.5 + 0.2 * (math.log10(lr) + 4) + rng.gauss(0, 0.03)
        config = {"lr": lr, "dummy": rng.random(), "opt": {"name": rng.choice(["sgd", "adam"])}}
        run = RunBuilder(root, f"run{i:02d}", config=config | {"seed": 7})
        run.scalars("loss", "val", [best * 2, best * 1.2, best], steps=[10, 20, 30])
        run.finish().write()


def test_only_the_learning_rate_matters_and_the_dummy_does_not(tmp_path: Path) -> None:
    _lr_sweep(tmp_path)
    result = sweep(open_store(tmp_path))
    first = result.params[0]
    assert first.name == "lr" and first.verdict == "matters"
    assert first.direction == "lower is better"
    assert first.importance is not None and first.importance > 0.8
    assert first.low is not None and first.low > 0.5
    by_name = {p.name: p for p in result.params}
    assert by_name["dummy"].verdict == "no evidence"
    assert by_name["opt.name"].verdict == "no evidence"
    assert by_name["opt.name"].best_level in ("sgd", "adam")
    assert result.constant == ["seed"]
    again = sweep(open_store(tmp_path))
    assert again.json() == result.json()  # seeded resampling: the same answer twice


def test_beyond_the_tested_keys_a_key_has_its_importance_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config of thousands of keys: the most important get an interval and a p-value,
    the rest are ranked by importance alone."""
    monkeypatch.setattr(sweep_module, "MAX_TESTED", 1)
    _lr_sweep(tmp_path)
    result = sweep(open_store(tmp_path))
    assert [p.verdict for p in result.params][:1] == ["matters"]
    rest = result.params[1:]
    assert rest and all(p.verdict == "not tested" and p.p_value is None for p in rest)
    assert all(p.importance is not None for p in rest)
    out = CliRunner().invoke(main, ["sweep", str(tmp_path)])
    assert out.exit_code == 0 and "(not tested)" in out.output


def test_maximised_metric_turns_the_direction(tmp_path: Path) -> None:
    rng = random.Random(1)
    for i in range(10):
        width = rng.choice([16, 32, 64, 128, 256])
        acc = 0.5 + 0.1 * math.log2(width / 16) + rng.gauss(0, 0.01)
        run = RunBuilder(tmp_path, f"w{i}", config={"width": width})
        run.scalars("acc", "val", [acc - 0.1, acc], steps=[5, 10]).finish().write()
    (width,) = sweep(open_store(tmp_path), metric="acc/val").params  # goal from the name
    assert width.direction == "higher is better" and width.verdict == "matters"


def test_three_runs_cannot_tell(tmp_path: Path) -> None:
    _lr_sweep(tmp_path, runs=3)
    result = sweep(open_store(tmp_path))
    assert not result.enough
    assert all(p.importance is None and p.verdict == "not enough runs" for p in result.params)
    out = CliRunner().invoke(main, ["sweep", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "not enough runs to tell what mattered" in out.output


def test_failed_and_diverged_runs_count_as_the_worst_outcomes(tmp_path: Path) -> None:
    """Four runs at the high learning rate fail or diverge: their early best losses would
    make it look fine; ranked worst, the high rate is the bad level."""
    for i in range(8):
        lr = [1e-3, 1e-1][i % 2]
        run = RunBuilder(tmp_path, f"r{i}", config={"lr": str(lr), "id": i})
        if lr == 1e-3:
            run.scalars("loss", "val", [0.9, 0.5 + i / 100], steps=[5, 10]).finish()
        elif i % 4 == 1:  # diverged: an early low loss, then NaN
            run.scalars("loss", "val", [0.3, math.nan], steps=[5, 10]).finish()
        else:
            run.scalars("loss", "val", [0.2], steps=[5]).fail("RuntimeError", "CUDA error")
        run.write()
    result = sweep(open_store(tmp_path))
    assert sorted(result.json()["failed_or_diverged"]) == ["r1", "r3", "r5", "r7"]
    lr = {p.name: p for p in result.params}["lr"]
    assert lr.kind == "categorical" and lr.best_level == "0.001" and lr.verdict == "matters"


def test_the_sweep_view_and_the_cli_json(tmp_path: Path) -> None:
    _lr_sweep(tmp_path, runs=8)
    nested_config = {"opt": {"betas": [0.9, 0.99]}, "flag": True, "data set": {"n.rows": 5}}
    RunBuilder(tmp_path, "nested", config=nested_config).finish().write()
    store = open_store(tmp_path)
    rows = store.sql("SELECT key, value, number FROM sweep WHERE run_id = 'run00' ORDER BY key")
    assert rows["key"].to_list() == ["dummy", "lr", "opt.name", "seed"]
    assert rows["number"][3] == 7.0 and rows["number"][2] is None
    nested = store.sql(
        "SELECT key, value FROM sweep_of('loss', 'val', 'min') WHERE run_id = 'nested'"
    )
    assert sorted(nested.rows()) == [
        ("data set.n.rows", "5"),  # json_tree's quotes taken off
        ("flag", "true"),
        ("opt.betas", "[0.9,0.99]"),
    ]
    out = CliRunner().invoke(
        main,
        ["sweep", str(tmp_path), "--format", "json", "--run-filter", "name <> 'run07'"],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["metric"] == "loss/val" and doc["mode"] == "min" and doc["runs"] == 7
    assert {"name", "importance", "low", "high", "runs_with_value"} <= set(doc["params"][0])
    bad = CliRunner().invoke(main, ["sweep", str(tmp_path), "--run-filter", "nonsense("])
    assert bad.exit_code == 2 and "--run-filter" in bad.output
    none = CliRunner().invoke(main, ["sweep", str(tmp_path), "--metric", "bleu/test"])
    assert none.exit_code != 0 and "no run in the store has an outcome" in none.output
