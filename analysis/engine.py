"""Diagnosis: the rules over a store's runs, their findings and gaps, with the
findings cache (``analysis.cache``) and the engine that evaluates them (in process,
``analysis.evaluation``; or on Spark, ``analysis.spark``).

Rules are declarative records (``analysis.rule``); ``analysis.evaluation`` decides,
per run, whether a rule has the data it needs, runs its query and turns rows into
``Finding`` values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from analysis import cache as findings_cache
from analysis.evaluation import Evaluation, evaluate_runs, in_order
from analysis.findings import Finding, NotEvaluated, findings_table
from analysis.rule import Rule, load_rules
from analysis.store import Store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass
class Diagnosis:
    """Everything ``telemetry analyze`` reports: the runs, findings, and gaps."""

    runs: pl.DataFrame
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    """The runs whose rules ran; the others' findings came from the findings cache."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs.to_dicts(),
            "findings": [f.to_dict() for f in self.findings],
            "not_evaluated": [n.to_dict() for n in self.not_evaluated],
        }


def diagnose(
    store: Store,
    *,
    run_ids: Iterable[str] | None = None,
    rules: Iterable[Rule] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    on_rule: Callable[[str], None] | None = None,
    cache: bool = False,
    engine: str = "duckdb",
    spark: SparkSession | None = None,
    on_partition: Callable[[int, int], None] | None = None,
) -> Diagnosis:
    """Evaluate ``rules`` (default: all shipped) on ``run_ids`` (default: every run).

    ``params`` overrides thresholds per rule: ``{"overfitting": {"min_rise": 0.2}}``
    (``analysis.parse_overrides`` builds it from ``rule.param=value`` text or TOML, typed
    and checked). A rule or parameter it names that is not evaluated is a ``KeyError``:
    a misspelt threshold never passes silently. ``on_rule(rule_id)`` is called as each
    rule starts (a progress bar).

    ``cache``: take the findings of each run whose segments, status and rules are
    unchanged since the last cached analysis from the store's findings cache
    (``analysis.cache``), evaluate the others, and update the cache. The result is
    the one an uncached call gives, in the same order; ``Diagnosis.evaluated`` names
    the runs whose rules ran. ``store`` may be runs-only (``open_store(root,
    runs_only=True)``, listed from the run index and digests): the runs evaluated are
    then opened alone, so with the cache the unchanged runs are never read (what
    ``telemetry analyze`` does); what their open skips joins ``store.unreadable``.

    ``engine="spark"``: the runs are evaluated on the executors of ``spark`` (a
    ``SparkSession``; ``analysis.spark``), with the same rules, giving the same
    result; ``on_partition(done, total)`` is told as its partitions finish (``on_rule``
    is not called). The driver needs only the ``runs`` view: ``store`` may be
    runs-only, and the executors open the runs themselves.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if engine == "spark" and spark is None:
        raise ValueError("engine='spark' needs spark=SparkSession (analysis.spark.local_session)")
    chosen = list(rules) if rules is not None else load_rules()
    overrides = params or {}
    unknown_rules = sorted(set(overrides) - {rule.id for rule in chosen})
    if unknown_rules:
        raise KeyError(
            f"params name rule(s) {unknown_rules} that are not evaluated; "
            f"rules: {sorted(rule.id for rule in chosen)}"
        )
    for rule in chosen:
        _check_overrides(rule, overrides.get(rule.id, {}))
    runs = store.sql("SELECT * FROM runs ORDER BY started_at, run_id")
    everything = runs
    if run_ids is not None:
        wanted = list(run_ids)
        unknown = sorted(set(wanted) - set(runs["run_id"].to_list()))
        if unknown:
            raise KeyError(f"no run(s) {unknown} in {store.path}")
        runs = runs.filter(pl.col("run_id").is_in(wanted))
    selected = runs["run_id"].to_list()
    if not cache:
        if spark is not None and engine == "spark":
            found, _ = _on_spark(spark, store, chosen, overrides, selected, on_partition)
        else:
            found = evaluate_runs(
                store, chosen, overrides, selected, on_rule, runs=everything.height
            )
        return Diagnosis(runs, found.findings, found.not_evaluated, evaluated=selected)
    statuses = dict(
        zip(everything["run_id"].to_list(), everything["status"].to_list(), strict=True)
    )
    rules_key = findings_cache.rules_digest(chosen, overrides)
    keys = findings_cache.run_keys(store, statuses, rules_key)
    entries = findings_cache.read(store.path)
    hits = {r: e for r in selected if (e := entries.get(r)) is not None and e.key == keys.get(r)}
    todo = [r for r in selected if r not in hits]
    log.debug("findings cache: %d of %d run(s) evaluated", len(todo), len(selected))
    found = Evaluation()

    def rekey(own: Store, batch: list[str]) -> None:  # keyed by the files it read
        again = findings_cache.run_keys(own, {r: statuses[r] for r in batch}, rules_key)
        keys.update({r: again.get(r, "") for r in batch})

    if todo and spark is not None and engine == "spark":
        found, fresh_keys = _on_spark(
            spark, store, chosen, overrides, todo, on_partition, statuses, rules_key
        )
        keys.update({r: fresh_keys.get(r, "") for r in todo})  # keyed by the files read
    elif todo:
        found = evaluate_runs(
            store, chosen, overrides, todo, on_rule, runs=everything.height, rekey=rekey
        )
    result = Diagnosis(runs, found.findings, found.not_evaluated, evaluated=todo)
    if hits:
        result.findings, result.not_evaluated = in_order(
            chosen,
            selected,
            [*found.findings, *(f for e in hits.values() for f in e.findings)],
            [*found.not_evaluated, *(n for e in hits.values() for n in e.not_evaluated)],
        )
    by_run: dict[str, tuple[list[Finding], list[NotEvaluated]]] = {r: ([], []) for r in todo}
    for f in found.findings:
        by_run[f.run_id][0].append(f)
    for n in found.not_evaluated:
        by_run[n.run_id][1].append(n)
    fresh = {
        r: findings_cache.Entry(keys[r], tuple(fs), tuple(ns))
        for r, (fs, ns) in by_run.items()
        if keys.get(r) and r not in found.failed
    }
    kept = {r: e for r, e in entries.items() if r in statuses and r not in fresh}
    if fresh or len(kept) != len(entries):
        findings_cache.write(store.path, {**kept, **fresh})
    return result


ENGINES = ("duckdb", "spark")
"""Where the rules run: in this process, or on Spark's executors (``analysis.spark``)."""


def _on_spark(
    spark: SparkSession,
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    run_ids: list[str],
    on_partition: Callable[[int, int], None] | None,
    statuses: Mapping[str, str] | None = None,
    rules_key: str | None = None,
) -> tuple[Evaluation, dict[str, str]]:
    from analysis.spark.scheduling import evaluate_on_spark  # pyspark: only for this engine

    return evaluate_on_spark(
        spark,
        store,
        chosen,
        overrides,
        run_ids,
        statuses=statuses,
        rules_key=rules_key,
        on_partition=on_partition,
    )


def register_findings(store: Store, diagnosis: Diagnosis | None = None) -> Diagnosis:
    """Make the findings queryable as the table ``findings`` of ``store``: rule,
    severity, run_id, subject, step, message, suggestion, evidence (JSON), caused_by.

    From ``diagnosis``, or from ``diagnose(store)`` with the default rules and
    thresholds when it is None (what ``telemetry query`` does for a query that names
    ``findings``). Findings are derived, never stored: the table is made for this
    open store and replaced by a later call. Call it before ``store.lock()``."""
    if diagnosis is None:
        diagnosis = diagnose(store)
    table = findings_table(diagnosis.findings)
    store.con.register("_arrow_findings", table)
    try:
        store.con.execute(
            "CREATE OR REPLACE TABLE findings AS "
            "SELECT * REPLACE (CAST(evidence AS JSON) AS evidence) FROM _arrow_findings"
        )
    finally:
        store.con.unregister("_arrow_findings")
    return diagnosis


def _check_overrides(rule: Rule, values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(rule.params))
    if unknown:
        raise KeyError(
            f"rule {rule.id!r} has no parameter(s) {unknown}; it has {sorted(rule.params)}"
        )
