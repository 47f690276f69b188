"""``telemetry watch ROOT``: follow running runs, a live line each and new findings."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import click

from telemetry import common
from telemetry.common import EXIT_FINDINGS, printable

if TYPE_CHECKING:
    from store.location import StorePath
    from telemetry.watching import Live, Tick

FAIL_ON = ("failed", "error", "warning", "never")


@click.command()
@common.root_argument
@common.run_option
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to look again.",
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="never",
    show_default=True,
    help="Exit 1 at the end when a watched run failed or crashed (failed), or also when "
    "a finding of this severity was seen (error, warning).",
)
def watch(root: StorePath, run_ids: tuple[str, ...], every: float, fail_on: str) -> None:
    """Follow the running runs of ROOT until they end: a live line per run (step, last
    train and validation loss, steps/s, status) and every new finding once, as soon as
    the rules see it.

    Without --run: the runs running now, and any run that starts while watching. Exits
    0 when every watched run has ended (see --fail-on), 130 on Ctrl-C. On a terminal
    the live lines are redrawn in place; elsewhere (CI logs) each change is a plain line.

    \b
    Example:
      telemetry watch runs/                        # every running run
      telemetry watch runs/ --run RUN_ID --fail-on error --every 10
    """
    from analysis import StoreError
    from telemetry.watching import Watch

    screen = _Screen(sys.stdout.isatty())
    watcher = Watch(root, run_ids)
    failed: list[str] = []
    while True:
        try:
            tick = watcher.tick()
        except StoreError as e:
            raise common.cli_error(e) from e
        except KeyError as e:
            raise click.BadParameter(
                f"no run {e.args[0]} in {printable(str(root))}", param_hint="'--run'"
            ) from e
        if not watcher.watched:
            click.echo(
                f"no running run in {printable(str(root))}: start one, or name one with --run"
            )
            return
        screen.show(tick)
        if tick.over:
            failed = [r.run_id for r in tick.live if r.status in ("failed", "crashed")]
            break
        time.sleep(every)
    ended = ", ".join(f"{printable(r.name)} {r.status}" for r in tick.live)
    click.echo(f"all watched runs have ended: {ended}")
    worst = watcher.worst()
    threshold = {"error": 2, "warning": 1}.get(fail_on)
    if fail_on != "never" and (failed or (threshold is not None and worst >= threshold)):
        sys.exit(EXIT_FINDINGS)


class _Screen:
    """Prints ticks: on a terminal the live block is redrawn under the findings; in a
    log, a live line is printed when its run's status or step changed."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._drawn = 0  # lines of the live block on the terminal
        self._last: dict[str, tuple[str, int]] = {}

    def show(self, tick: Tick) -> None:
        stamp = time.strftime("%H:%M:%S")
        lines = [f"[{stamp}] watching {printable(r)}" for r in tick.new_runs]
        names = {r.run_id: r.name for r in tick.live}
        for f in tick.new_findings:
            badge = click.style(f.severity.value.upper(), fg=_COLOURS[f.severity.value])
            subject = f" {printable(f.subject)}" if f.subject else ""
            at = f" step {f.step}" if f.step is not None else ""
            lines.append(
                f"[{stamp}] {printable(names.get(f.run_id, f.run_id))}: {badge} "
                f"{printable(f.rule)}{subject}{at}: {printable(f.message)}"
            )
            lines.append(click.style(f"           fix: {printable(f.suggestion)}", dim=True))
        if self.tty:
            if self._drawn:  # up to the block's first line, erasing it
                click.echo(f"\x1b[{self._drawn}F\x1b[J", nl=False)
            for line in lines:
                click.echo(line)
            block = [_line(r) for r in tick.live]
            for line in block:
                click.echo(line)
            self._drawn = len(block)
            return
        for r in tick.live:
            state = (r.status, r.step)
            if self._last.get(r.run_id) != state:
                self._last[r.run_id] = state
                lines.append(f"[{stamp}] {_line(r)}")
        for line in lines:
            click.echo(line)
        sys.stdout.flush()  # a pipe is block-buffered: a log reader sees each tick now


_COLOURS = {"error": "red", "warning": "yellow", "info": "blue"}


def _line(r: Live) -> str:
    def number(x: float | None) -> str:
        if x is None:
            return "-"
        return f"{x:.4g}" if math.isfinite(x) else str(x)

    rate = f"{r.steps_per_s:.1f} steps/s" if r.steps_per_s is not None else "- steps/s"
    return (
        f"{printable(r.name)}  {r.status:<8}  step {r.step:>7}  loss {number(r.train_loss):>9}  "
        f"val {number(r.val_loss):>9}  {rate}"
    )
