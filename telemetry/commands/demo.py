"""``telemetry demo``: train the demo runs (``telemetry.demo``), diagnose them, write the report.

It imports torch when it runs (``telemetry.demo`` trains the models), never when it is
imported: ``telemetry --help`` and ``telemetry demo --help`` stay torch-free.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reports import write_report
from telemetry import common
from telemetry.common import printable
from telemetry.diagnosis import diagnose_with_progress, format_diagnosis
from telemetry.progress import progress

if TYPE_CHECKING:
    from store.location import StorePath


@click.command()
@click.option(
    "--out",
    type=common.STORE_ROOT,
    default="demo-runs",
    show_default=True,
    help="Store to train into (created if missing; a directory or an s3:// URL).",
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
def demo(out: StorePath, report_path: Path, quiet: bool) -> None:
    """Train 5 small runs on the bundled digits data, diagnose them, write the report.

    The runs are healthy, overfit, vanishing (deep sigmoid MLP), dead_relu (a large
    negative bias on most hidden units) and exploding (unnormalised inputs, large
    learning rate); all but the first should be flagged.

    \b
    Example:
      telemetry demo --out demo-runs --report report.html
      telemetry demo --quiet            # just train, diagnose and write the report
    """
    from telemetry.demo import SCENARIOS, run_demo  # imports torch (~2 s)

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
    diagnosis = diagnose_with_progress(store, tuple(run_ids), None, quiet=quiet)
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
