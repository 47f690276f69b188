"""The findings cache: a run is evaluated again only when its segments, its status or
the rules changed, and a cached analysis gives exactly what an uncached one gives."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import Diagnosis, Store, diagnose, evaluation, load_rules, open_store
from analysis import cache as findings_cache
from benchmarks.store_scale import write_run
from store.indexing import record_writer
from store.schema import Stream
from tests.analysis import cases
from tests.builders import RunBuilder

RULE_SQL = {rule.sql: rule.id for rule in load_rules()}


def _counting(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the rules whose query ``store`` runs from now on."""
    ran: list[str] = []
    real = store.sql

    def sql(query: str, params: Any = None) -> Any:
        if query in RULE_SQL:
            ran.append(RULE_SQL[query])
        return real(query, params)

    monkeypatch.setattr(store, "sql", sql)
    return ran


def _json(diagnosis: Diagnosis) -> str:
    return json.dumps(diagnosis.to_dict(), default=str)


def _identity(diagnosis: Diagnosis) -> list[Any]:
    """What a finding says, in order, without its evidence: DuckDB sums floats in
    parallel, so evidence totals may differ in the last bit from one evaluation to the
    next (``data_bottleneck`` on a run of two ranks); what the cache serves is exact."""
    said = [
        (f.rule, f.run_id, f.subject, f.step, f.message, f.suggestion, f.caused_by)
        for f in diagnosis.findings
    ]
    return [said, diagnosis.not_evaluated]


def _two_runs(root: Path) -> Path:
    cases.healthy(root).write()
    cases.divergence(root).write()
    return root


def test_second_analysis_evaluates_nothing_and_gives_identical_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _two_runs(tmp_path)
    first = diagnose(open_store(root), cache=True)
    assert sorted(first.evaluated) == ["diverged", "healthy"]
    assert findings_cache.cache_path(root).is_file()
    store = open_store(root)
    ran = _counting(store, monkeypatch)
    second = diagnose(store, cache=True)
    assert ran == [] and second.evaluated == []
    assert _json(second) == _json(first) == _json(diagnose(open_store(root)))


def test_only_a_new_run_is_evaluated(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    diagnose(open_store(root), cache=True)
    cases.overfitting(root).write()
    store = open_store(root)
    again = diagnose(store, cache=True)
    assert again.evaluated == ["overfit"]
    assert _json(again) == _json(diagnose(store))


def test_a_run_whose_segment_changed_is_evaluated_again(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    diagnose(open_store(root), cache=True)
    segment = next((root / "healthy" / "scalars").glob("*.parquet"))
    os.utime(segment, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert diagnose(open_store(root), cache=True).evaluated == ["healthy"]


def test_a_changed_parameter_or_rule_sql_invalidates_every_run(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    store = open_store(root)
    both = ["diverged", "healthy"]
    diagnose(store, cache=True)
    # the default, set explicitly: the same thresholds
    assert diagnose(store, params={"overfitting": {"patience": 3}}, cache=True).evaluated == []
    # an int where the default is the float 3.0 is another threshold
    assert (
        sorted(diagnose(store, params={"overfitting": {"min_z": 3}}, cache=True).evaluated) == both
    )
    changed = {"overfitting": {"min_rise": 0.5}}
    assert sorted(diagnose(store, params=changed, cache=True).evaluated) == both
    assert diagnose(store, params=changed, cache=True).evaluated == []
    # back to the defaults: the cache holds the last analysis only
    assert sorted(diagnose(store, cache=True).evaluated) == both
    rules = [
        dataclasses.replace(r, sql=r.sql + "\n-- edited") if r.id == "divergence" else r
        for r in load_rules()
    ]
    assert sorted(diagnose(store, rules=rules, cache=True).evaluated) == both
    assert diagnose(store, rules=rules, cache=True).evaluated == []


def test_a_running_run_is_always_evaluated_and_never_cached(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    live = RunBuilder(root, "live", start=time.time())
    live.scalars("loss", "train", cases.train_curve(30)).write()  # no final event: running
    store = open_store(root)
    assert store.sql("SELECT status FROM runs WHERE run_id = 'live'").item() == "running"
    diagnose(store, cache=True)
    assert diagnose(store, cache=True).evaluated == ["live"]
    assert "live" not in findings_cache.read(root)


def test_a_subset_of_runs_keeps_the_others_cached(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    diagnose(open_store(root), cache=True)
    store = open_store(root)
    assert diagnose(store, run_ids=["diverged"], cache=True).evaluated == []
    assert sorted(findings_cache.read(root)) == ["diverged", "healthy"]


def test_without_cache_nothing_is_read_or_written(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    diagnose(open_store(root))
    assert not (root / findings_cache.CACHE_DIR).exists()


def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    path = findings_cache.cache_path(root)
    path.parent.mkdir()
    path.write_bytes(b"PAR1 not a parquet file")
    store = open_store(root)
    diagnosis = diagnose(store, cache=True)
    assert sorted(diagnosis.evaluated) == ["diverged", "healthy"]
    assert _json(diagnosis) == _json(diagnose(store))
    assert sorted(findings_cache.read(root)) == ["diverged", "healthy"]


def test_a_cache_of_another_layout_is_ignored(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _two_runs(tmp_path)
    path = findings_cache.cache_path(root)
    path.parent.mkdir()
    pq.write_table(pa.table({"run_id": ["healthy"], "key": ["x"]}), path)
    assert sorted(diagnose(open_store(root), cache=True).evaluated) == ["diverged", "healthy"]


def test_a_store_that_cannot_be_written_is_analysed_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _two_runs(tmp_path)
    store = open_store(root)
    expected = _json(diagnose(store))

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(findings_cache.os, "replace", refuse)  # a read-only file system
    assert _json(diagnose(store, cache=True)) == expected
    assert list((root / findings_cache.CACHE_DIR).iterdir()) == []  # no temporary left
    (root / findings_cache.CACHE_DIR).rmdir()
    (root / findings_cache.CACHE_DIR).write_text("a file where the cache directory belongs")
    assert _json(diagnose(store, cache=True)) == expected


def test_the_cache_is_not_listed_as_part_of_the_store(tmp_path: Path) -> None:
    root = _two_runs(tmp_path)
    diagnose(open_store(root), cache=True)
    store = open_store(root)
    assert store.unreadable == []
    assert sorted(store.run_ids()) == ["diverged", "healthy"]


def test_findings_are_identical_with_and_without_cache_on_the_labelled_cases(
    tmp_path: Path,
) -> None:
    """Every labelled run in one store: uncached, a cold cache and a warm one agree,
    and each run's findings are those it gets alone in a store (no rule compares
    runs, which is what makes caching per run sound)."""
    root = tmp_path / "all"
    makers = list(dict.fromkeys([*cases.POSITIVE.values(), cases.NEGATIVE]))
    for make in makers:
        make(root).write()
    store = open_store(root)
    plain = diagnose(store)
    assert plain.findings, "the labelled runs must fire"
    cold = diagnose(store, cache=True)
    warm = diagnose(open_store(root), cache=True)
    assert warm.evaluated == []
    assert _json(cold) == _json(warm)
    assert _identity(cold) == _identity(plain)
    for i, make in enumerate(makers):
        alone = tmp_path / f"alone-{i}"
        run_id = make(alone).write().run_id
        own = _identity(diagnose(open_store(alone), run_ids=[run_id]))
        assert [f for f in _identity(warm)[0] if f[1] == run_id] == own[0]
        assert [n for n in warm.not_evaluated if n.run_id == run_id] == own[1]


def test_a_store_evaluated_in_batches_of_runs_gives_the_findings_of_one_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``BATCH_ROWS`` tensors rows the runs are evaluated a few at a time, each
    batch in a store of its own: same findings, same order, with and without the cache,
    and a progress callback still told of each rule once."""
    makers = list(dict.fromkeys([*cases.POSITIVE.values(), cases.NEGATIVE]))
    for make in makers:
        make(tmp_path).write()
    store = open_store(tmp_path)
    whole = diagnose(store)
    rows = store.rows_by_run(Stream.TENSORS)
    assert (
        len(rows) >= 4
        and sum(rows.values()) == store.sql("SELECT count(*) AS n FROM tensors")["n"][0]
    )
    monkeypatch.setattr(evaluation, "BATCH_ROWS", max(rows.values()))
    batches = evaluation._batches(store, store.run_ids())
    assert len(batches) >= 3 and sorted(r for b in batches for r in b) == sorted(store.run_ids())
    told: list[str] = []
    batched = diagnose(store, on_rule=told.append)
    ids = [rule.id for rule in load_rules()]
    assert len(told) == len(ids) and set(told) <= set(ids)  # a bar of rules fills once
    assert _identity(batched) == _identity(whole)
    cold = diagnose(store, cache=True)
    assert sorted(cold.evaluated) == sorted(store.run_ids())
    assert _identity(cold) == _identity(whole)
    assert _json(diagnose(open_store(tmp_path), cache=True)) == _json(cold)


def _indexed_runs(root: Path, n: int) -> np.random.Generator:
    """``n`` finished runs as closing collectors leave them: digests and index lines."""
    rng = np.random.default_rng(0)
    for i in range(n):
        write_run(root, f"sweep-{i}", 60, 2, rng)
        record_writer(root / f"sweep-{i}", 0, 0)
    return rng


def test_a_runs_only_store_serves_the_cache_and_opens_only_the_runs_to_evaluate(
    tmp_path: Path,
) -> None:
    """What ``telemetry analyze`` does: listed from the run index and digests, the cached
    runs are never opened, the others are evaluated in a store of their own, and the
    result is the full store's."""
    rng = _indexed_runs(tmp_path, 3)
    cases.healthy(tmp_path).write()  # no digest: listed from its rows
    first = diagnose(open_store(tmp_path, runs_only=True), cache=True)
    assert sorted(first.evaluated) == ["healthy", "sweep-0", "sweep-1", "sweep-2"]
    assert _json(first) == _json(diagnose(open_store(tmp_path)))
    listed = open_store(tmp_path, runs_only=True)
    assert listed.files() == [p for p in listed.files() if "healthy" in p.parts]
    again = diagnose(listed, cache=True)
    assert again.evaluated == []
    assert _json(again) == _json(first)
    write_run(tmp_path, "sweep-new", 60, 2, rng)
    record_writer(tmp_path / "sweep-new", 0, 0)
    third = diagnose(open_store(tmp_path, runs_only=True), cache=True)
    assert third.evaluated == ["sweep-new"]
    assert _json(third) == _json(diagnose(open_store(tmp_path)))
    # uncached, a runs-only store is evaluated in a store of all its runs
    assert _json(diagnose(open_store(tmp_path, runs_only=True))) == _json(third)


def test_a_store_opened_on_some_runs_lists_those_alone(tmp_path: Path) -> None:
    _indexed_runs(tmp_path, 3)
    (tmp_path / "stray.txt").write_text("not a run")
    store = open_store(tmp_path, run_ids=["sweep-0", "sweep-2", "absent"])
    assert store.run_ids() == ["sweep-0", "sweep-2"]
    assert store.unreadable == []  # the stray beside the runs is not looked at
    assert {p.parts[-3] for p in store.files()} == {"sweep-0", "sweep-2"}
