"""``telemetry analyze ROOT``: the diagnostic rules over a store, findings as a table or JSON.

Also ``--explain RULE`` (what a rule checks, its parameters and SQL; no store needed)
and the thresholds of ``--set RULE.PARAM=VALUE`` and ``--config FILE``. Exit 1 when a
finding reaches ``--fail-on``.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from telemetry import common
from telemetry.common import EXIT_FINDINGS
from telemetry.diagnosis import diagnose_with_progress, format_diagnosis

if TYPE_CHECKING:
    from analysis import Rule
    from store.location import StorePath


def _overrides(assignments: tuple[str, ...], config: Path | None) -> dict[str, dict[str, Any]]:
    """``--config`` then ``--set`` as typed ``diagnose`` params; bad input is a usage error."""
    if not assignments and config is None:
        return {}
    from analysis import OverrideError, load_rules, parse_overrides, read_config

    try:
        table = read_config(config) if config is not None else None
        return parse_overrides(
            load_rules(), config=table, source=str(config), assignments=assignments
        )
    except OverrideError as e:
        raise common.cli_error(e, param_hint="'--config'" if e.in_config else "'--set'") from e


def _explain(ctx: click.Context, param: click.Parameter, rule_id: str | None) -> None:
    """``--explain RULE``: eager, like ``--help``, so it prints and exits before ROOT is needed."""
    if rule_id is None or ctx.resilient_parsing:
        return
    from analysis import load_rules

    rules = {r.id: r for r in load_rules()}
    if rule_id not in rules:
        raise click.BadParameter(
            f"no rule {rule_id!r}; rules: {', '.join(sorted(rules))}", ctx=ctx, param=param
        )
    click.echo(explain_rule(rules[rule_id]))
    ctx.exit(0)


@click.command()
@common.root_argument
@common.run_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "never"]),
    default=None,
    help="Exit with status 1 when a finding is at least this severe "
    "[default: never for table, error for json].",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="RULE.PARAM=VALUE",
    help="Override a rule's threshold, typed like its default (repeatable; wins over --config).",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="TOML file of thresholds, one table per rule: '[overfitting]' then 'patience = 5'.",
)
@click.option(
    "--explain",
    metavar="RULE",
    is_eager=True,
    expose_value=False,
    callback=_explain,
    help="Print what RULE checks (severity, suggestion, data it needs, parameters "
    "and defaults, SQL) and exit; no ROOT needed.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Evaluate every run, neither reading nor writing the store's findings cache "
    "(ROOT/.cache/findings.parquet).",
)
@common.engine_options
@common.quiet_option
def analyze(
    root: StorePath,
    run_ids: tuple[str, ...],
    fmt: str,
    fail_on: str | None,
    assignments: tuple[str, ...],
    config: Path | None,
    no_cache: bool,
    engine: str,
    master: str,
    spark_conf: dict[str, str],
    quiet: bool,
) -> None:
    """Run the diagnostic rules over the runs in ROOT and print the findings.

    Thresholds come from each rule's header; --config and --set override them
    (--explain RULE lists a rule's parameters and defaults).

    Each run's findings are kept in ROOT/.cache/findings.parquet and reused while the
    run's segment files, the rules and their thresholds are unchanged and the run is
    not still running: re-analysing a store where one run changed evaluates that run.
    --no-cache evaluates every run and writes no cache. A store that cannot be written
    is analysed without one.

    --engine spark evaluates the runs on Apache Spark's executors (--master, --conf):
    the same rules in DuckDB on each executor, the same output; the executors need
    this package and the store's files.

    \b
    Example:
      telemetry analyze runs/
      telemetry analyze runs/ --run digits-cnn-20261128-101500-ab12cd --format json
      telemetry analyze runs/ --fail-on warning   # for CI: exit 1 on any warning or error
      telemetry analyze runs/ --set overfitting.patience=5 --set loss_not_decreasing.metric=nll
      telemetry analyze runs/ --config thresholds.toml
      telemetry analyze runs/ --no-cache          # evaluate every run afresh
      telemetry analyze runs/ --engine spark --master spark://head:7077
      telemetry analyze --explain overfitting
    """
    params = _overrides(assignments, config)
    # With the cache, only the runs to evaluate are read: the others are listed from
    # the run index and digests (a runs-only open), their findings from the cache.
    # Spark's driver only lists the runs: its executors open them. The store first: a
    # missing one is named before Spark takes its seconds to start.
    store = common.open_root(root, runs_only=not no_cache or engine == "spark")
    spark = common.spark_session(master, spark_conf) if engine == "spark" else None
    diagnosis = diagnose_with_progress(
        store, run_ids, params, quiet=quiet, cache=not no_cache, spark=spark
    )
    if fmt == "json":
        from store.records import json_safe  # strict JSON: NaN/Inf become strings

        payload = diagnosis.to_dict()
        for run in payload["runs"]:
            run["config"] = json.loads(run["config"]) if run.get("config") else {}
        click.echo(json.dumps(json_safe(payload), indent=2, default=_json_default, allow_nan=False))
    else:
        click.echo(format_diagnosis(diagnosis, store))
    threshold = fail_on or ("never" if fmt == "table" else "error")
    if threshold != "never":
        ranks = {"warning": 1, "error": 2}
        if any(f.severity.rank >= ranks[threshold] for f in diagnosis.findings):
            raise SystemExit(EXIT_FINDINGS)


def explain_rule(rule: Rule) -> str:
    """What ``--explain`` prints: the rule's record, then its file (header comments and SQL)."""
    needs = ", ".join(" or ".join(r.describe() for r in need) for need in rule.requires)
    lines = [
        f"{rule.id}  ({rule.severity.value})  {rule.title}",
        f"seed:        {rule.seed}",
        f"suggestion:  {rule.suggestion}",
        f"null:        {rule.null}",
        f"false alarms: {rule.false_alarms}",
        f"requires:    {needs or 'nothing'}",
        "evaluated:   once the run has ended (it weighs the whole run)"
        if rule.ended_only
        else "evaluated:   on running runs too (telemetry watch)",
    ]
    if rule.params:
        lines.append(
            f"parameters:  (override: --set {rule.id}.PARAM=VALUE, or [{rule.id}] in --config)"
        )
        width = max(len(f"{n} = {v!r}") for n, v in rule.params.items())
        for name, default in rule.params.items():
            lines.append(f"  {f'{name} = {default!r}':<{width}}  {type(default).__name__}")
    else:
        lines.append("parameters:  none")
    # The file, not rule.sql: its free comments say how the thresholds are used.
    source = resources.files("analysis.rules").joinpath(f"{rule.id}.sql")
    text = source.read_text() if source.is_file() else rule.sql
    lines += ["", f"sql (analysis/rules/{rule.id}.sql):", ""]
    lines += [f"  {line}".rstrip() for line in text.rstrip().splitlines()]
    return "\n".join(lines)


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
