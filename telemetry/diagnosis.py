"""The diagnosis as the verbs run it and show it: ``analyze``, ``report`` and ``demo``.

``diagnose`` runs the rules over a store (a run id that is not there: exit 3),
``diagnose_with_progress`` with a bar over the rules on a terminal, and
``format_diagnosis`` is the findings table people read (``analyze``, ``demo``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from telemetry.common import StoreProblem, printable
from telemetry.progress import progress

if TYPE_CHECKING:
    from analysis import Diagnosis, Finding, Store


def diagnose(
    store: Store,
    run_ids: tuple[str, ...],
    params: dict[str, dict[str, Any]] | None = None,
    on_rule: Callable[[str], None] | None = None,
    *,
    cache: bool = False,
    spark: Any = None,
    on_partition: Callable[[int, int], None] | None = None,
) -> Diagnosis:
    """The rules over ``store`` (``run_ids``: only these; none: every run); ``cache``:
    through the store's findings cache (``analysis.cache``).

    A run id the store does not hold is a ``StoreProblem`` naming the runs it does.
    """
    # analysis pulls in duckdb + polars (~0.7 s); imported by the verbs that read only.
    from analysis import diagnose as run_rules

    try:
        return run_rules(
            store,
            run_ids=run_ids or None,
            params=params,
            on_rule=on_rule,
            cache=cache,
            engine="duckdb" if spark is None else "spark",
            spark=spark,
            on_partition=on_partition,
        )
    except KeyError as e:
        known = ", ".join(store.run_ids()) or "none"
        raise StoreProblem(f"{e.args[0]}; runs in the store: {known}") from e


def diagnose_with_progress(
    store: Store,
    run_ids: tuple[str, ...],
    params: dict[str, dict[str, Any]] | None,
    *,
    quiet: bool,
    cache: bool = False,
    spark: Any = None,
) -> Diagnosis:
    """``diagnose`` with a bar over the rules on a terminal (stderr); on Spark
    (``spark``, a SparkSession), a line per finished partition instead."""
    from analysis import load_rules

    if spark is not None:
        with progress(None, "analyzing on Spark", quiet=quiet, unit="partition") as bar:

            def partition(done: int, total: int) -> None:
                bar.say(f"spark: {done} of {total} partition(s) analysed")

            return diagnose(
                store, run_ids, params, cache=cache, spark=spark, on_partition=partition
            )
    with progress(len(load_rules()), "analyzing", quiet=quiet, unit="rule") as bar:
        return diagnose(
            store, run_ids, params, on_rule=lambda rule: bar.advance(note=rule), cache=cache
        )


_BADGES = {"error": ("ERROR", "red"), "warning": ("WARNING", "yellow"), "info": ("INFO", "blue")}
_SUBJECT_WIDTH = 32  # longer subjects (deep parameter names) push their line out


def format_diagnosis(diagnosis: Diagnosis, store: Store) -> str:
    """The runs, then the findings grouped by run, worst first: one line each
    (severity, rule, subject, step, message) and the suggestion under it.

    Colour comes from ``click.style``; ``click.echo`` strips it where the output is not
    a terminal, so files, pipes and tests get plain text. Every string that comes from
    the store goes through ``printable`` (``p``) before it is styled or aligned.
    """
    p = printable
    lines: list[str] = []
    runs = diagnosis.runs
    if store.unreadable:
        from analysis.store import summarise  # a few lines per reason, however many files

        lines.append(f"skipped {len(store.unreadable)} unreadable file(s):")
        lines += [f"  {p(line)}" for line in summarise(store.unreadable)]
    if runs.is_empty():
        lines.append(f"no runs in {p(str(store.path))}")
        return "\n".join(lines)
    names = {
        run_id: p(name)
        for run_id, name in zip(runs["run_id"].to_list(), runs["name"].to_list(), strict=True)
    }
    width = max(len(n) for n in names.values())
    lines.append(f"{len(runs)} run(s) in {p(str(store.path))}:")
    for row in runs.iter_rows(named=True):
        duration = f"{row['duration_s']:.1f} s" if row["duration_s"] is not None else "?"
        lines.append(
            f"  {names[row['run_id']]:<{width}}  {p(row['status']):<8}  {row['steps']:>6} steps  "
            f"{duration:>9}  {p(row['run_id'])}"
        )
    lines.append("")
    by_run: dict[str, list[Finding]] = {}
    for f in diagnosis.findings:
        by_run.setdefault(f.run_id, []).append(f)
    found_all = diagnosis.findings
    rule_w = max((len(p(f.rule)) for f in found_all), default=0)
    subject_w = min(max((len(p(f.subject or "")) for f in found_all), default=0), _SUBJECT_WIDTH)
    step_w = max((len(_step(f)) for f in found_all), default=0)
    indent = " " * (4 + 7 + 2)

    def show(f: Finding, depth: int, under: dict[str | None, list[Finding]]) -> None:
        label, colour = _BADGES[f.severity.value]
        badge = click.style(f"{label:<7}", fg=colour, bold=f.severity.rank == 2)
        subject = p(f.subject or "")
        cells = f"{p(f.rule):<{rule_w}}  {subject:<{subject_w}}  {_step(f):<{step_w}}"
        message = p(f.message) if f.severity.rank else click.style(p(f.message), dim=True)
        if depth:  # a consequence, under its cause: the cause's fix is the one to apply
            lines.append(f"    {'  ' * depth}-> {badge}  {cells}  {message}")
            lines.append(click.style(f"{indent}  caused by {p(f.caused_by or '')}", dim=True))
        else:
            lines.append(f"    {badge}  {cells}  {message}")
            lines.append(click.style(f"{indent}fix: {p(f.suggestion)}", dim=True))
        for consequence in under.get(f.key, []):
            show(consequence, depth + 1, under)

    lines.append("findings:")
    for run_id, name in names.items():
        found = sorted(by_run.get(run_id, []), key=lambda f: -f.severity.rank)
        serious = [f for f in found if f.severity.rank >= 1]
        verdict = "no warnings or errors" if not serious else f"{len(serious)} warning(s)/error(s)"
        lines.append(f"  {click.style(name, bold=True)} ({p(run_id)}): {verdict}")
        keys = {f.key for f in found}
        under: dict[str | None, list[Finding]] = {}
        for f in found:
            if f.caused_by in keys:
                under.setdefault(f.caused_by, []).append(f)
        for f in found:
            if f.caused_by not in keys:
                show(f, 0, under)
    if diagnosis.not_evaluated:
        lines.append("")
        lines.append(f"not evaluated ({len(diagnosis.not_evaluated)}):")
        for n in diagnosis.not_evaluated:
            lines.append(f"  {names.get(n.run_id, p(n.run_id))}: {p(n.rule)}: {p(n.reason)}")
    return "\n".join(lines)


def _step(finding: Finding) -> str:
    return f"step {finding.step}" if finding.step is not None else ""
