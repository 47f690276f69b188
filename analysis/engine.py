"""Evaluation: run the rules over a store and collect findings.

Rules are declarative records (``analysis.rule``); this module decides, per run,
whether a rule has the data it needs (else a ``NotEvaluated`` with the reason),
runs its query with its parameters, and turns rows into ``Finding`` values.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from analysis import cache as findings_cache
from analysis import causes
from analysis.findings import Finding, NotEvaluated, findings_table
from analysis.rule import Requirement, Rule, load_rules
from analysis.store import Store, open_store
from store.metrics import default_goal
from store.schema import Stream, stream_columns

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
    """
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
        found = _evaluate_runs(store, chosen, overrides, selected, on_rule, runs=everything.height)
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
    found = _Evaluation()

    def rekey(own: Store, batch: list[str]) -> None:  # keyed by the files it read
        again = findings_cache.run_keys(own, {r: statuses[r] for r in batch}, rules_key)
        keys.update({r: again.get(r, "") for r in batch})

    if todo:
        found = _evaluate_runs(
            store, chosen, overrides, todo, on_rule, runs=everything.height, rekey=rekey
        )
    result = Diagnosis(runs, found.findings, found.not_evaluated, evaluated=todo)
    if hits:
        result.findings, result.not_evaluated = _in_order(
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


BATCH_ROWS = 12_000_000
"""``tensors`` rows evaluated together. Runs holding more are evaluated a batch at a
time, each batch in a store of its own (``_store_of``), so what a rule's query holds
(a median per parameter, a hash table per step and parameter) is one batch's, not the
store's: DuckDB cannot spill a median, and a store of 100 runs x 20k steps x 16
parameters (96M rows) ran out of its 1 GB limit in vanishing_gradients and took 115 s
in one piece, against ~5 s for each tenth of it (benchmarks/store_scale.py --sweep)."""


def _evaluate_runs(
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    run_ids: list[str],
    on_rule: Callable[[str], None] | None,
    *,
    runs: int,
    rekey: Callable[[Store, list[str]], None] | None = None,
) -> _Evaluation:
    """``_evaluate`` over ``run_ids`` of ``store`` (which holds ``runs`` runs), in
    batches of at most ``BATCH_ROWS`` tensors rows; ``rekey(own, batch)`` is told of
    each store of its own a batch was evaluated in. The result is the one evaluation
    gives in one piece, in the same order."""
    if store.runs_only:  # no stream views: the runs' own store has them
        with _store_of(store, run_ids, runs) as own:
            found = _evaluate_runs(own, chosen, overrides, run_ids, on_rule, runs=len(run_ids))
            if rekey is not None:
                rekey(own, run_ids)
        return found
    batches = _batches(store, run_ids)
    if len(batches) == 1 and rekey is None:
        return _evaluate(store, chosen, overrides, run_ids, on_rule)
    found = _Evaluation()
    progress = _spread(on_rule, len(batches))
    for batch in batches:
        with _store_of(store, batch, runs, alone=len(batches) > 1) as own:
            part = _evaluate(own, chosen, overrides, batch, progress)
            if rekey is not None and own is not store:
                rekey(own, batch)
        found.findings += part.findings
        found.not_evaluated += part.not_evaluated
        found.failed |= part.failed
    found.findings, found.not_evaluated = _in_order(
        chosen, run_ids, found.findings, found.not_evaluated
    )
    return found


def _in_order(
    chosen: list[Rule], run_ids: list[str], findings: list[Finding], gaps: list[NotEvaluated]
) -> tuple[list[Finding], list[NotEvaluated]]:
    """Findings and gaps gathered from several evaluations (batches, the cache) in the
    order one evaluation of ``chosen`` over ``run_ids`` gives: findings by ``_order``,
    gaps by rule, then by run in ``run_ids``' order."""
    rank = {rule.id: i for i, rule in enumerate(chosen)}
    position = {r: i for i, r in enumerate(run_ids)}
    return sorted(findings, key=_order), sorted(
        gaps, key=lambda n: (rank[n.rule], position[n.run_id])
    )


def _batches(store: Store, run_ids: list[str]) -> list[list[str]]:
    """``run_ids`` in consecutive batches of at most ``BATCH_ROWS`` tensors rows (a run
    with more is a batch of its own)."""
    rows = store.rows_by_run(Stream.TENSORS)
    batches: list[list[str]] = []
    held = BATCH_ROWS + 1
    for run_id in run_ids:
        n = rows.get(run_id, 0)
        if held + n > BATCH_ROWS:
            batches.append([])
            held = 0
        batches[-1].append(run_id)
        held += n
    return batches or [[]]


def _spread(on_rule: Callable[[str], None] | None, parts: int) -> Callable[[str], None] | None:
    """``on_rule`` called once per rule in all, over ``parts`` evaluations of every rule
    (a progress bar counts rules)."""
    if on_rule is None or parts <= 1:
        return on_rule
    calls, told = 0, 0

    def each(rule_id: str) -> None:
        nonlocal calls, told
        calls += 1
        while told < calls // parts:
            on_rule(rule_id)
            told += 1

    return each


@contextlib.contextmanager
def _store_of(
    store: Store, run_ids: list[str], runs: int, *, alone: bool = False
) -> Iterator[Store]:
    """``store``, or where ``run_ids`` are a few of its ``runs`` (or ``alone``, or
    ``store`` is runs-only), the store opened on those runs alone. The views read every
    listed file's footer in each query, so evaluating one new run among 1,000 would
    cost what evaluating all does. Sound because no rule compares runs (each one's
    query partitions by ``run_id``; ``tests/analysis/test_cache.py`` checks the
    labelled runs' findings alone and together). What the runs' store skips joins
    ``store.unreadable``, named in warnings where ``store`` did not read these runs'
    files itself (a runs-only store)."""
    if not (alone or store.runs_only) and len(run_ids) * 2 > runs:
        yield store
        return
    listing = logging.getLogger("analysis.store")
    level = listing.level
    if not store.runs_only:  # what it skips was named when ``store`` was opened
        listing.setLevel(logging.ERROR)
    try:
        own = open_store(store.path, run_ids=run_ids)
    finally:
        listing.setLevel(level)
    with own:
        store.unreadable += [u for u in own.unreadable if u not in store.unreadable]
        yield own


@dataclass
class _Evaluation:
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    """Runs a rule's query failed for: perhaps only this time, so never cached."""


def _order(f: Finding) -> tuple[Any, ...]:
    # A total order (subject and message break ties): rules' queries have no ORDER BY, and
    # DuckDB's threads would otherwise reorder findings from one run of analyze to the next.
    return (f.run_id, -f.severity.rank, f.rule, f.step or 0, f.subject or "", f.message)


def _evaluate(
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    selected: list[str],
    on_rule: Callable[[str], None] | None,
) -> _Evaluation:
    """The rules over the runs ``selected``: their findings, sorted and linked."""
    goals = _goals(store)
    result = _Evaluation()
    # per (view, what): each run's matching rows, and its rows of the view
    counts: dict[tuple[str, str | None], dict[str, tuple[int, int]]] = {}

    def seen(req: Requirement, run_id: str) -> tuple[int, int]:
        return counts[req.view, req.what].get(run_id, (0, 0))

    for rule in chosen:
        if on_rule is not None:
            on_rule(rule.id)
        values = {**rule.params, **overrides.get(rule.id, {})}
        needs = [tuple(r.resolve(values) for r in need) for need in rule.requires]
        for req in (r for need in needs for r in need):
            if (req.view, req.what) not in counts:
                counts[req.view, req.what] = _count_rows(store, req)
        expected = _expected_goals(rule, values)
        ready = []
        for run_id in selected:
            missing = [
                need for need in needs if not any(seen(r, run_id)[0] >= r.min_rows for r in need)
            ]
            against = [
                (name, goal, theirs)
                for name, goal in expected
                if (theirs := goals.get((run_id, name)) or default_goal(name)) not in (None, goal)
            ]
            if against:
                reason = "; ".join(
                    f"reads {name!r} as a metric that should {_VERB[goal]}, but its goal is "
                    f"{theirs!r} (tel.define_metric or its name, store.metrics)"
                    for name, goal, theirs in against
                )
                result.not_evaluated.append(NotEvaluated(rule.id, run_id, reason))
            elif missing:
                reason = "needs " + ", ".join(
                    " or ".join(r.describe(seen(r, run_id) if r.column else None) for r in need)
                    for need in missing
                )
                result.not_evaluated.append(NotEvaluated(rule.id, run_id, reason))
            else:
                ready.append(run_id)
        if not ready:
            continue
        try:
            rows = store.sql(rule.sql, values)
        except duckdb.Error as e:
            log.warning("rule %s failed: %s", rule.id, e)
            result.not_evaluated.extend(
                NotEvaluated(rule.id, r, f"the rule's query failed: {e}") for r in ready
            )
            result.failed.update(ready)
            continue
        for row in rows.filter(pl.col("run_id").is_in(ready)).to_dicts():
            result.findings.append(_finding(rule, row))
    result.findings.sort(key=_order)
    result.findings = causes.link(result.findings, titles={rule.id: rule.title for rule in chosen})
    return result


_VERB = {"min": "fall", "max": "rise"}


def _goals(store: Store) -> dict[tuple[str, str], str]:
    """(run, metric) -> its goal, where it has one (the ``metric_goals`` view)."""
    frame = store.sql("SELECT run_id, name, goal FROM metric_goals WHERE goal IS NOT NULL")
    return {(r, n): g for r, n, g in frame.iter_rows()}


def _expected_goals(rule: Rule, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metric name, the goal ``rule`` reads it with): a parameter whose default names a
    metric with a goal (``metric = 'loss'``: min; ``acc_metric = 'acc'``: max) expects
    that goal of whatever metric it is set to."""
    return [
        (str(values[param]), goal)
        for param, default in rule.params.items()
        if isinstance(default, str) and (goal := default_goal(default)) is not None
    ]


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


def _finding(rule: Rule, row: Mapping[str, Any]) -> Finding:
    evidence = row.get("evidence")
    parsed = json.loads(evidence) if isinstance(evidence, str) else (evidence or {})
    step = row.get("step")
    suggestion = row.get("suggestion")  # a rule's query may give advice fit for the run
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        run_id=row["run_id"],
        subject=row.get("subject"),
        step=int(step) if step is not None else None,
        message=row["message"],
        suggestion=suggestion if suggestion else rule.suggestion,
        evidence=parsed,
    )


def _check_overrides(rule: Rule, values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(rule.params))
    if unknown:
        raise KeyError(
            f"rule {rule.id!r} has no parameter(s) {unknown}; it has {sorted(rule.params)}"
        )


def _count_rows(store: Store, req: Requirement) -> dict[str, tuple[int, int]]:
    """Per run: the rows that match ``req``, and all its rows of ``req.view`` (one query
    for all runs)."""
    where = ["true"]
    args: dict[str, Any] = {}
    matching = "count(*)"
    if req.column is not None:
        # a column of the stream (checked when the rule was loaded): its non-null values
        if req.column not in stream_columns(req.view):
            raise ValueError(f"{req.view} has no column {req.column!r}")
        matching = f'count("{req.column}")'
    elif req.what is not None:
        if req.view == "scalars":
            name, sep, split = req.what.rpartition("/")
            where.append("name = $name")
            args["name"] = name if sep else split
            if sep:
                where.append("split = $split")
                args["split"] = split
        else:  # tensors (the rule loader allows a name or kind nowhere else)
            where.append("kind = $kind")
            args["kind"] = req.what
    # The view name comes from a validated rule header, never from user input.
    query = (
        f"SELECT run_id, {matching} AS n, count(*) AS total FROM {req.view} "
        f"WHERE {' AND '.join(where)} GROUP BY run_id"
    )
    df = store.sql(query, args or None)
    return {
        run_id: (n, total)
        for run_id, n, total in zip(
            df["run_id"].to_list(), df["n"].to_list(), df["total"].to_list(), strict=True
        )
    }
