"""The Spark engine: Spark schedules the per-run analysis, the rules stay DuckDB SQL,
and the result is the local one (``analysis.spark``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from analysis import Diagnosis, diagnose, load_rules, open_store
from analysis.findings import NotEvaluated
from analysis.spark import scheduling
from telemetry.cli import main
from tests.analysis import cases

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _labelled(root: Path) -> Path:
    for make in dict.fromkeys([*cases.POSITIVE.values(), cases.NEGATIVE]):
        make(root).write()
    return root


def _said(diagnosis: Diagnosis) -> list[Any]:
    """Findings in order without evidence (DuckDB may sum floats in another order from
    one evaluation to the next: ``data_bottleneck`` on two ranks), and the gaps."""
    return [
        [
            (f.rule, f.run_id, f.subject, f.step, f.message, f.suggestion, f.caused_by)
            for f in diagnosis.findings
        ],
        diagnosis.not_evaluated,
    ]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _labelled(tmp_path_factory.mktemp("labelled") / "runs")


def test_spark_gives_the_local_findings_on_the_labelled_cases(
    spark: SparkSession, labelled: Path
) -> None:
    local = diagnose(open_store(labelled))
    assert local.findings, "the labelled runs must fire"
    progress: list[tuple[int, int]] = []
    remote = diagnose(
        open_store(labelled, runs_only=True),  # the driver only lists the runs
        engine="spark",
        spark=spark,
        on_partition=lambda done, total: progress.append((done, total)),
    )
    assert _said(remote) == _said(local)
    assert [f.evidence.keys() for f in remote.findings] == [
        f.evidence.keys() for f in local.findings
    ]
    assert remote.runs.equals(local.runs)
    total = progress[-1][1]
    assert total == len(
        scheduling.partitions(remote.evaluated, spark.sparkContext.defaultParallelism)
    )
    assert progress[-1] == (total, total)
    assert [d for d, _ in progress] == sorted({d for d, _ in progress})  # each told once


def test_spark_fills_the_findings_cache_that_local_analysis_reads(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    cases.healthy(root).write()
    cases.divergence(root).write()
    cold = diagnose(open_store(root, runs_only=True), cache=True, engine="spark", spark=spark)
    assert len(cold.evaluated) == 2
    warm = diagnose(open_store(root, runs_only=True), cache=True)
    assert warm.evaluated == [] and _said(warm) == _said(cold)


def test_a_run_that_cannot_be_analysed_is_reported_and_the_others_are_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's runs together, then each alone: the run at fault is not evaluated by
    any rule, with the executor's error; its partition's other runs keep their findings.
    (The task function itself: a monkeypatch does not reach Spark's Python workers.)"""
    root = tmp_path / "runs"
    bad = cases.healthy(root).write().run_id
    good = cases.divergence(root).write().run_id
    real = scheduling._Task.evaluate

    def failing(task: scheduling._Task, run_ids: list[str]) -> list[scheduling.Record]:
        if bad in run_ids:
            raise MemoryError("executor out of memory")
        return real(task, run_ids)

    monkeypatch.setattr(scheduling._Task, "evaluate", failing)
    rules = load_rules()
    records = list(scheduling._Task(str(root), rules, {}, {}, None)([[bad, good]]))
    gaps = [r for r in records if isinstance(r, NotEvaluated) and r.run_id == bad]
    assert [g.rule for g in gaps] == [r.id for r in rules]
    assert "MemoryError: executor out of memory" in gaps[0].reason
    assert "Spark executor" in gaps[0].reason
    assert scheduling._Failed(bad) in records
    local = diagnose(open_store(root), run_ids=[good])
    assert [
        r
        for r in records
        if getattr(r, "run_id", None) == good and not isinstance(r, scheduling._Key)
    ] == [
        *local.findings,
        *local.not_evaluated,
    ]


def test_partitions_cover_every_run_once_in_order() -> None:
    runs = [f"r{i}" for i in range(23)]
    parts = scheduling.partitions(runs, cores=2)
    assert len(parts) == 8 and [r for p in parts for r in p] == runs
    assert {len(p) for p in parts} == {2, 3}
    assert scheduling.partitions(["a"], cores=16) == [["a"]]
    assert scheduling.partitions([], cores=2) == []


def test_analyze_engine_spark_prints_what_engine_duckdb_prints(
    spark: SparkSession, labelled: Path
) -> None:
    runner = CliRunner()
    local = runner.invoke(main, ["analyze", str(labelled), "--format", "json", "--no-cache", "-q"])
    remote = runner.invoke(
        main,
        ["analyze", str(labelled), "--format", "json", "--no-cache", "-q", "--engine", "spark"],
    )
    assert local.exit_code == remote.exit_code == 1, remote.output  # errors among the findings
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert [f["rule"] for f in a["findings"]] == [f["rule"] for f in b["findings"]]
    assert a["runs"] == b["runs"] and a["not_evaluated"] == b["not_evaluated"]


def test_analyze_engine_spark_without_pyspark_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases.healthy(tmp_path).write()
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if not installed
    result = CliRunner().invoke(main, ["analyze", str(tmp_path), "--engine", "spark"])
    assert result.exit_code == 2
    assert "pip install 'telemetry[spark]'" in result.output


def test_a_bad_conf_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["analyze", str(tmp_path), "--engine", "spark", "--conf", "spark.executor.memory"]
    )
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.output


@pytest.mark.parametrize("verb", [["analyze"], ["query", "SELECT 1"]])
def test_a_missing_store_is_named_before_spark_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: list[str]
) -> None:
    started: list[str] = []
    import analysis.spark

    monkeypatch.setattr(analysis.spark, "local_session", lambda *a, **k: started.append("spark"))
    args = [verb[0], str(tmp_path / "nowhere"), *verb[1:], "--engine", "spark"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3 and "no store" in result.output
    assert started == []
