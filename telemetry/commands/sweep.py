"""``telemetry sweep ROOT``: which hyperparameters mattered, and which way (``analysis.sweep``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from telemetry import common
from telemetry.common import printable

if TYPE_CHECKING:
    from analysis.sweep import Param, Sweep
    from store.location import StorePath


@click.command()
@common.root_argument
@click.option(
    "--metric",
    default="loss/val",
    show_default=True,
    metavar="NAME/SPLIT",
    help="The outcome: each run's best value of this logged metric.",
)
@click.option(
    "--mode",
    type=click.Choice(["min", "max"]),
    default=None,
    help="Which way the metric improves (default: its goal: define_metric, else its name).",
)
@click.option(
    "--run-filter",
    default=None,
    metavar="SQL",
    help="Only the runs matching this condition on the runs view, e.g. "
    "\"name LIKE 'lr-sweep%'\" or \"json_extract_string(config, '$.model') = 'cnn'\".",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def sweep(root: StorePath, metric: str, mode: str | None, run_filter: str | None, fmt: str) -> None:
    """Rank the hyperparameters of ROOT's runs (their config, flattened) by how much of
    the outcome they explain, with a direction (numbers) or the best level (anything
    else), a 95 % bootstrap interval and a permutation p-value. Failed and diverged runs
    count, as the worst outcomes. Fewer than 6 runs: "not enough runs".

    \b
    Example:
      telemetry sweep runs/
      telemetry sweep runs/ --metric acc/val --run-filter "name LIKE 'lr-%'" --format json
    """
    import duckdb

    from analysis.sweep import SweepError
    from analysis.sweep import sweep as rank

    store = common.open_root(root)
    run_ids = None
    if run_filter is not None:
        store.lock()
        try:
            found = store.sql(f"SELECT run_id FROM runs WHERE ({run_filter})")
        except duckdb.Error as e:
            raise click.BadParameter(
                f"not a condition on the runs view: {e}", param_hint="--run-filter"
            ) from e
        run_ids = found["run_id"].to_list()
    try:
        result = rank(store, metric=metric, mode=mode, run_ids=run_ids)
    except SweepError as e:
        raise common.cli_error(e) from e
    if fmt == "json":
        click.echo(json.dumps(result.json(), indent=2))
    else:
        click.echo(_table(result))


def _table(result: Sweep) -> str:
    failed = sum(r.failed for r in result.runs)
    lines = [
        f"{result.metric} ({result.mode}) over {len(result.runs)} runs"
        + (f", {failed} failed or diverged (ranked worst)" if failed else "")
    ]
    if not result.enough:
        lines.append(
            f"not enough runs to tell what mattered: {len(result.runs)} with an outcome, 6 needed"
        )
    lines.append(f"{'hyperparameter':<28} {'importance':>10} {'95% interval':>15} {'p':>6}  effect")
    for p in result.params:
        lines.append(_row(p))
    if result.constant:
        lines.append("the same in every run: " + ", ".join(printable(c) for c in result.constant))
    return "\n".join(lines)


def _row(p: Param) -> str:
    name = printable(p.name)[:28]
    if p.importance is None:
        why = "a different value in every run" if p.verdict == "a name" else "not enough runs"
        return f"{name:<28} {'-':>10} {'-':>15} {'-':>6}  {why} ({p.runs_with_value})"
    effect = p.direction if p.kind == "numeric" else f"best: {printable(str(p.best_level))}"
    if p.low is None or p.high is None or p.p_value is None:  # beyond MAX_TESTED
        return f"{name:<28} {p.importance:>10.2f} {'-':>15} {'-':>6}  {effect}  (not tested)"
    interval = f"[{p.low:.2f}, {p.high:.2f}]"
    tag = "" if p.verdict == "matters" else "  (no evidence it matters)"
    return f"{name:<28} {p.importance:>10.2f} {interval:>15} {p.p_value:>6.3f}  {effect}{tag}"
