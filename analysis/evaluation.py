"""Evaluating rules over runs: per run, whether a rule has the data it needs (else a
``NotEvaluated`` with the reason), its query with its parameters, its rows as
``Finding`` values, linked to their causes.

Every rule partitions by run, so runs can be evaluated apart and their results
gathered: in batches of runs (``evaluate_runs``, bounded memory), from the findings
cache (``analysis.engine``), or on Spark's executors (``analysis.spark``); ``in_order``
puts the parts in the order one evaluation gives.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from analysis import causes
from analysis.findings import Finding, NotEvaluated
from analysis.rule import Requirement, Rule
from analysis.store import Store, open_store
from store.metrics import default_goal
from store.schema import Stream, stream_columns

log = logging.getLogger(__name__)


BATCH_ROWS = 12_000_000
"""``tensors`` rows evaluated together. Runs holding more are evaluated a batch at a
time, each batch in a store of its own (``_store_of``), so what a rule's query holds
(a median per parameter, a hash table per step and parameter) is one batch's, not the
store's: DuckDB cannot spill a median, and a store of 100 runs x 20k steps x 16
parameters (96M rows) ran out of its 1 GB limit in vanishing_gradients and took 115 s
in one piece, against ~5 s for each tenth of it (benchmarks/store_scale.py --sweep)."""


def evaluate_runs(
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    run_ids: list[str],
    on_rule: Callable[[str], None] | None,
    *,
    runs: int,
    rekey: Callable[[Store, list[str]], None] | None = None,
) -> Evaluation:
    """``evaluate`` over ``run_ids`` of ``store`` (which holds ``runs`` runs), in
    batches of at most ``BATCH_ROWS`` tensors rows; ``rekey(own, batch)`` is told of
    each store of its own a batch was evaluated in. The result is the one evaluation
    gives in one piece, in the same order."""
    if store.runs_only:  # no stream views: the runs' own store has them
        with _store_of(store, run_ids, runs) as own:
            found = evaluate_runs(own, chosen, overrides, run_ids, on_rule, runs=len(run_ids))
            if rekey is not None:
                rekey(own, run_ids)
        return found
    batches = _batches(store, run_ids)
    if len(batches) == 1 and rekey is None:
        return evaluate(store, chosen, overrides, run_ids, on_rule)
    found = Evaluation()
    progress = _spread(on_rule, len(batches))
    for batch in batches:
        with _store_of(store, batch, runs, alone=len(batches) > 1) as own:
            part = evaluate(own, chosen, overrides, batch, progress)
            if rekey is not None and own is not store:
                rekey(own, batch)
        found.findings += part.findings
        found.not_evaluated += part.not_evaluated
        found.failed |= part.failed
    found.findings, found.not_evaluated = in_order(
        chosen, run_ids, found.findings, found.not_evaluated
    )
    return found


def in_order(
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
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    """Runs a rule's query failed for: perhaps only this time, so never cached."""


def _order(f: Finding) -> tuple[Any, ...]:
    # A total order (subject and message break ties): rules' queries have no ORDER BY, and
    # DuckDB's threads would otherwise reorder findings from one run of analyze to the next.
    return (f.run_id, -f.severity.rank, f.rule, f.step or 0, f.subject or "", f.message)


STILL_RUNNING = (
    "judged once the run has ended (it weighs the whole run: the rest of a live run can "
    "take back what it would say now)"
)


def evaluate(
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    selected: list[str],
    on_rule: Callable[[str], None] | None,
) -> Evaluation:
    """The rules over the runs ``selected``: their findings, sorted and linked."""
    goals = _goals(store)
    running = set(store.sql("SELECT run_id FROM runs WHERE status = 'running'")["run_id"])
    result = Evaluation()
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
            if rule.ended_only and run_id in running:
                result.not_evaluated.append(NotEvaluated(rule.id, run_id, STILL_RUNNING))
            elif against:
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
