"""The ``telemetry`` command line: one function per verb, heavy imports inside them.

Exit codes:
    0    done (and no finding reached ``--fail-on``)
    1    a finding at or above ``--fail-on`` severity
    2    bad usage (click's own code), a query or filter that cannot run
    3    the store or a run could not be found or read
    124  ``telemetry query --timeout`` passed (the status timeout(1) uses)
    130  interrupted by Ctrl-C (128 + SIGINT, what a shell reports)

Everything a verb prints for people goes through ``telemetry.output.printable``:
control characters in run names, ids, metrics, messages and file names are shown
escaped, never sent to the terminal (warnings of the libraries too, see ``_Warnings``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from telemetry import common
from telemetry.common import EXIT_STORE as EXIT_STORE  # re-exported: the exit codes live here
from telemetry.common import StoreProblem
from telemetry.output import CliError, printable

if TYPE_CHECKING:
    from analysis import Diagnosis, Finding, Rule, Store

EXIT_FINDINGS = 1
EXIT_INTERRUPTED = 130


class Interrupted(CliError):
    """Ctrl-C: a short line and exit 130 instead of click's "Aborted!" and status 1."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted (Ctrl-C)")

    def show(self, file: Any = None) -> None:
        click.echo(err=True)  # past the "^C" the terminal echoed, as click does
        super().show(file)


class _Verbs(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # Every verb: click would print "Aborted!" and exit 1, which a script cannot
        # tell from a failure. (telemetry query also stops DuckDB first: query.py.)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None


class _Warnings(logging.Handler):
    """The libraries' warnings (a skipped file, named by its path) on stderr, escaped.

    Python's last-resort handler would print them raw: a file name in the store can
    hold any byte but '/' and NUL. Resolves stderr when it writes (CliRunner swaps it).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(printable(self.format(record), keep="\n"), err=True)


def _escape_warnings() -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _Warnings) for h in root.handlers):
        root.addHandler(_Warnings())


_root_argument = click.argument("root", type=click.Path(path_type=Path))
_run_option = click.option(
    "--run", "run_ids", multiple=True, metavar="ID", help="Only this run (repeatable)."
)
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar or status lines (stderr)."
)


@click.group(cls=_Verbs, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="telemetry")
def main() -> None:
    """Training telemetry for PyTorch: Parquet event logs, SQL diagnostics, an HTML report.

    \b
    Example:
      telemetry demo                       # train 5 small runs, diagnose, write report.html
      telemetry analyze runs/              # findings for every run in the store
      telemetry report runs/ -o report.html

    Colours and progress bars only on a terminal (and no colour with NO_COLOR set).
    """
    if os.environ.get("NO_COLOR"):  # https://no-color.org; subcommands inherit ctx.color
        click.get_current_context().color = False
    _escape_warnings()


def _diagnose(
    store: Store,
    run_ids: tuple[str, ...],
    params: dict[str, dict[str, Any]] | None = None,
    on_rule: Callable[[str], None] | None = None,
) -> Diagnosis:
    from analysis import diagnose

    try:
        return diagnose(store, run_ids=run_ids or None, params=params, on_rule=on_rule)
    except KeyError as e:
        known = ", ".join(store.run_ids()) or "none"
        raise StoreProblem(f"{e.args[0]}; runs in the store: {known}") from e


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
        raise click.BadParameter(
            str(e), param_hint="'--config'" if e.in_config else "'--set'"
        ) from e


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


@main.command()
@_root_argument
@_run_option
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
@_quiet_option
def analyze(
    root: Path,
    run_ids: tuple[str, ...],
    fmt: str,
    fail_on: str | None,
    assignments: tuple[str, ...],
    config: Path | None,
    quiet: bool,
) -> None:
    """Run the diagnostic rules over the runs in ROOT and print the findings.

    Thresholds come from each rule's header; --config and --set override them
    (--explain RULE lists a rule's parameters and defaults).

    \b
    Example:
      telemetry analyze runs/
      telemetry analyze runs/ --run digits-cnn-20261128-101500-ab12cd --format json
      telemetry analyze runs/ --fail-on warning   # for CI: exit 1 on any warning or error
      telemetry analyze runs/ --set overfitting.patience=5 --set loss_not_decreasing.metric=nll
      telemetry analyze runs/ --config thresholds.toml
      telemetry analyze --explain overfitting
    """
    params = _overrides(assignments, config)
    store = common.open_root(root)
    diagnosis = _diagnose_with_progress(store, run_ids, params, quiet=quiet)
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


@main.command()
@_root_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML file.",
)
@_run_option
@click.option("--title", default=None, help="Page title.")
@click.option(
    "--max-runs",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Without --run: charts for this many most recently started runs (0: as many as "
    "a page holds, 12). Findings, the runs table and the run comparison always cover "
    "every run.",
)
def report(
    root: Path, output: Path, run_ids: tuple[str, ...], title: str | None, max_runs: int
) -> None:
    """Write one self-contained HTML report of ROOT: opens offline, from a file or a mail.

    Findings (linked to the charts that show them), runs, curves, gradients, weights
    and updates, activations, model summary, system timing, export benchmarks and a
    comparison of every run's hyperparameters with its best validation metric.

    \b
    Example:
      telemetry report runs/ -o report.html
      telemetry report runs/ -o one.html --run healthy-20250101-120000-ab12cd34 --title "PR 42"
    """
    from reports import write_report

    store = common.open_root(root)
    diagnosis = _diagnose(store, run_ids)
    limit = None if run_ids or max_runs == 0 else max_runs
    path = write_report(store, diagnosis, output, title=title, max_runs=limit)
    size = path.stat().st_size
    click.echo(
        f"wrote {printable(str(path))} ({size / 1e6:.2f} MB, {size:,} bytes, "
        f"{len(diagnosis.runs)} runs)"
    )


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-runs"),
    show_default=True,
    help="Store to train into (created if missing).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML report.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print only where the report was written (no progress, no findings table).",
)
def demo(out: Path, report_path: Path, quiet: bool) -> None:
    """Train 5 small runs on the bundled digits data, diagnose them, write the report.

    The runs are healthy, overfit, vanishing (deep sigmoid MLP), dead_relu (a large
    negative bias on most hidden units) and exploding (unnormalised inputs, large
    learning rate); all but the first should be flagged.

    \b
    Example:
      telemetry demo --out demo-runs --report report.html
      telemetry demo --quiet            # just train, diagnose and write the report
    """
    from reports import write_report
    from telemetry.demo import SCENARIOS, run_demo  # imports torch (~2 s)
    from telemetry.progress import progress

    started = time.perf_counter()
    epochs = sum(s.epochs for s in SCENARIOS)
    with progress(epochs, "training", quiet=quiet, unit="epoch") as bar:
        bar.say(
            f"training {len(SCENARIOS)} demo runs into {printable(str(out))}/ "
            "(digits from scikit-learn, no download)"
        )
        run_ids = run_demo(
            out, scenarios=SCENARIOS, progress=bar.say, tick=lambda note: bar.advance(note=note)
        )
    trained = time.perf_counter() - started
    store = common.open_root(out)
    diagnosis = _diagnose_with_progress(store, tuple(run_ids), None, quiet=quiet)
    if not quiet:
        click.echo("")
        click.echo(format_diagnosis(diagnosis, store))
    path = write_report(store, diagnosis, report_path, title="telemetry demo")
    total = time.perf_counter() - started
    shown, where = printable(str(path)), printable(str(out))
    if quiet:
        click.echo(f"wrote {shown}")
        return
    click.echo(f"\nwrote {shown}  (training {trained:.1f} s, total {total:.1f} s)")
    click.echo(f"next: telemetry analyze {where}   |   open {shown} in a browser")


def _diagnose_with_progress(
    store: Store,
    run_ids: tuple[str, ...],
    params: dict[str, dict[str, Any]] | None,
    *,
    quiet: bool,
) -> Diagnosis:
    """``_diagnose`` with a bar over the rules on a terminal (stderr)."""
    from analysis import load_rules
    from telemetry.progress import progress

    with progress(len(load_rules()), "analyzing", quiet=quiet, unit="rule") as bar:
        return _diagnose(store, run_ids, params, on_rule=lambda rule: bar.advance(note=rule))


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


def explain_rule(rule: Rule) -> str:
    """What ``--explain`` prints: the rule's record, then its file (header comments and SQL)."""
    from importlib import resources

    needs = ", ".join(" or ".join(r.describe() for r in need) for need in rule.requires)
    lines = [
        f"{rule.id}  ({rule.severity.value})  {rule.title}",
        f"seed:        {rule.seed}",
        f"suggestion:  {rule.suggestion}",
        f"null:        {rule.null}",
        f"false alarms: {rule.false_alarms}",
        f"requires:    {needs or 'nothing'}",
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


def _register_verbs() -> None:
    # Verbs that live in their own module (their options alone fill a screen).
    from telemetry.export_bench import export_bench
    from telemetry.importer import import_group
    from telemetry.query import query
    from telemetry.runs import runs

    main.add_command(export_bench)
    main.add_command(import_group)
    main.add_command(query)
    main.add_command(runs)


_register_verbs()
