"""The ``telemetry`` command line: the click group ``main`` and the verbs registered on it.

Each verb lives in its own module (``telemetry.commands.<verb>``); what they share is
in ``telemetry.common`` (exit codes, errors, opening a store, common options).
Importing a verb loads no DuckDB, Polars or torch: they are imported when a verb
runs, so ``telemetry --help`` starts at once.

Everything a verb prints for people goes through ``telemetry.common.printable``:
control characters in run names, ids, metrics, messages and file names are shown
escaped, never sent to the terminal (warnings of the libraries too, see ``_Warnings``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from store.errors import TelemetryError
from telemetry.commands.analyze import analyze
from telemetry.commands.demo import demo
from telemetry.commands.export_bench import export_bench
from telemetry.commands.import_tensorboard import import_group
from telemetry.commands.query import query
from telemetry.commands.report import report
from telemetry.commands.runs import runs
from telemetry.commands.sweep import sweep
from telemetry.commands.watch import watch
from telemetry.common import Interrupted, cli_error, exit_code, printable


class _Verbs(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # Every verb: click would print "Aborted!" and exit 1, which a script cannot
        # tell from a failure. (telemetry query also stops DuckDB first: commands/query.py.)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None
        except TelemetryError as e:
            # An error of the tree a verb did not report itself: its documented exit
            # code (a store problem 3, bad input 2), else 1 with its message, never a
            # traceback.
            if exit_code(e) is not None:
                raise cli_error(e) from e
            raise click.ClickException(f"{type(e).__name__}: {e}") from e


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


for _verb in (analyze, report, demo, export_bench, import_group, query, runs, sweep, watch):
    main.add_command(_verb)
