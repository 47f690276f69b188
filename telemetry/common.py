"""What every verb shares: exit codes, errors and their codes, opening a store, common options.

Exit codes (the README's "Command line" section documents them):
    0    done (and no finding reached ``--fail-on``)
    1    a finding at or above ``--fail-on`` severity
    2    bad usage (click's own code), a query or filter that cannot run
    3    the store or a run could not be found or read
    124  ``telemetry query --timeout`` passed (the status timeout(1) uses)
    130  interrupted by Ctrl-C (128 + SIGINT, what a shell reports)

The project's errors (``store.errors.TelemetryError`` and its subclasses) reach the
user through ``cli_error``, which gives each kind a verb reports its exit code
(``exit_code``); any other is a bug and keeps its traceback. The CLI's own errors::

    click.ClickException
      CliError          message shown with control characters escaped (``printable``)
        StoreProblem    (exit 3) the store or a run cannot be found or read
        QueryError      (exit 2) a query, filter or sort key that cannot run
        Interrupted     (exit 130) Ctrl-C
        OutputProblem   (exit 2) cannot write the output (``telemetry.output``)
        QueryTimeout    (exit 124) ``query --timeout`` passed (``telemetry.commands.query``)

Text from a run (names, ids, metric names, messages, config, file names) may hold
control characters: ``printable`` shows them as escapes (``\\x1b``) in every
human-readable output, so a run named ``"\\x1b]0;owned\\x07"`` cannot set the
terminal's title.

Everything here is cheap to import (click and ``store.errors``): ``telemetry --help``
loads no DuckDB, Polars or torch; ``analysis`` is imported when a verb opens a store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from store.errors import ConfigError, TelemetryError
from store.errors import StoreError as WriteError

if TYPE_CHECKING:
    from analysis import Store
    from store.location import StorePath

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

# C0, DEL and C1 (\x9b is a one-byte CSI on some terminals), the Unicode line and
# paragraph separators and bidirectional overrides/isolates (they reorder what a
# terminal shows: "Trojan Source"), and lone surrogates (a file name that is not UTF-8
# decodes to them; printing one raises UnicodeEncodeError). Backslashes are left as
# they are: a Windows path stays readable, at the cost of "\x1b" typed literally
# looking like an escaped ESC.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every control character shown as an escape, never emitted raw.

    ``keep``: characters left as they are (``"\\n"`` for a message of several lines).

    >>> printable("run\\x1b]0;owned\\x07")
    'run\\\\x1b]0;owned\\\\x07'
    """
    if _CONTROL.search(text) is None:  # the common case: no copy
        return text
    return _CONTROL.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


class CliError(click.ClickException):
    """A CLI error; its message may quote a run, so it is shown through ``printable``."""

    def format_message(self) -> str:
        return printable(self.message, keep="\n")


class StoreProblem(CliError):
    """The store or a run cannot be found or read: exit 3, naming the problem."""

    exit_code = EXIT_STORE


class QueryError(CliError):
    """A query that cannot run: not one read-only statement, or DuckDB refused it
    (``query``); a ``--where`` or ``--sort`` of ``runs`` that cannot be evaluated."""

    exit_code = EXIT_USAGE


class Interrupted(CliError):
    """Ctrl-C: a short line and exit 130 instead of click's "Aborted!" and status 1."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted (Ctrl-C)")

    def show(self, file: Any = None) -> None:
        click.echo(err=True)  # past the "^C" the terminal echoed, as click does
        super().show(file)


def _error_codes() -> tuple[tuple[type[TelemetryError], int], ...]:
    """The errors of the tree a verb reports, with their exit codes, first match wins."""
    # Here, not at the top: analysis pulls in duckdb + polars (~0.7 s), which
    # `telemetry --help` and the verbs that do not read a store never need.
    from analysis import OverrideError
    from analysis import StoreError as ReadError
    from analysis.spark import SparkUnavailable
    from analysis.sweep import SweepError

    return (
        (ReadError, EXIT_STORE),  # no store, not a directory (open_root)
        (SparkUnavailable, EXIT_USAGE),  # --engine spark without pyspark or Java
        (WriteError, EXIT_STORE),  # a store that cannot be written (demo --out, import --root)
        (OverrideError, EXIT_USAGE),  # analyze --set / --config: no such rule or parameter
        (SweepError, EXIT_USAGE),  # sweep --metric: no run logged it
        (ConfigError, EXIT_USAGE),  # a bad argument to the collector (export-bench's options)
    )


def exit_code(error: TelemetryError) -> int | None:
    """The documented exit code of ``error``; None for an error no verb reports (a bug)."""
    for kind, code in _error_codes():
        if isinstance(error, kind):
            return code
    return None


def cli_error(error: TelemetryError, *, param_hint: str | None = None) -> click.ClickException:
    """``error`` as the click exception that prints it and exits with its code.

    Exit 2 is click's usage error: with ``param_hint`` (``"'--set'"``) it names the
    option ("Invalid value for '--set': ..."), without it shows the usage line.
    Raises ``TypeError`` (with ``error`` as its cause) for an error that has no code.
    """
    code = exit_code(error)
    if code == EXIT_STORE:
        return StoreProblem(str(error))
    if code == EXIT_USAGE:
        if param_hint is not None:
            return click.BadParameter(str(error), param_hint=param_hint)
        return click.UsageError(str(error))
    raise TypeError(f"{type(error).__name__} has no exit code in telemetry.common") from error


def open_root(root: StorePath, *, runs_only: bool = False) -> Store:
    """The store at ``root``, or ``StoreProblem`` (exit 3) naming why not."""
    # analysis pulls in duckdb + polars (~0.7 s); only the verbs that read pay for it.
    from analysis import StoreError, open_store

    try:
        return open_store(root, runs_only=runs_only)
    except StoreError as e:
        raise cli_error(e) from e


class StoreRoot(click.ParamType):
    """A store: a directory (a ``Path``) or a URL (``s3://bucket/prefix``, any fsspec
    URL), kept as a ``store.location.RemotePath``; ``click.Path`` would fold its ``//``."""

    name = "root"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from store.location import store_path

        try:
            return store_path(value)
        except WriteError as e:  # no filesystem for the URL's scheme
            self.fail(str(e), param, ctx)


STORE_ROOT = StoreRoot()
root_argument = click.argument("root", type=STORE_ROOT)
run_option = click.option(
    "--run", "run_ids", multiple=True, metavar="ID", help="Only this run (repeatable)."
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar or status lines (stderr)."
)


ENGINES = ("duckdb", "spark")


def _conf(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        out[key.strip()] = value
    return out


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--engine duckdb|spark``, ``--master URL`` and ``--conf KEY=VALUE`` (repeatable)."""
    for option in reversed(
        [
            click.option(
                "--engine",
                type=click.Choice(ENGINES),
                default="duckdb",
                show_default=True,
                help="Where the work runs: in this process, or on Apache Spark "
                "(pip install 'telemetry[spark]'; a Java 17 runtime).",
            ),
            click.option(
                "--master",
                default="local[*]",
                show_default=True,
                metavar="URL",
                help="With --engine spark: the cluster (spark://host:7077, yarn, local[4]...).",
            ),
            click.option(
                "--conf",
                "spark_conf",
                multiple=True,
                metavar="KEY=VALUE",
                callback=_conf,
                help="With --engine spark: a Spark setting (repeatable), "
                "e.g. --conf spark.executor.memory=4g.",
            ),
        ]
    ):
        command = option(command)
    return command


def spark_session(master: str, conf: dict[str, str]) -> Any:
    """A Spark session for ``--engine spark`` (exit 2, naming what is missing, when Spark
    cannot start)."""
    from analysis.spark import SparkUnavailable, local_session

    try:
        return local_session(master, conf)
    except SparkUnavailable as e:
        raise cli_error(e) from e
