"""``telemetry report ROOT -o FILE``: one self-contained HTML report of a store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reports import write_report
from telemetry import common
from telemetry.common import printable
from telemetry.diagnosis import diagnose

if TYPE_CHECKING:
    from store.location import StorePath


@click.command()
@common.root_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML file.",
)
@common.run_option
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
@click.option(
    "--no-cache",
    is_flag=True,
    help="Evaluate every run's findings afresh, neither reading nor writing the store's "
    "findings cache (ROOT/.cache/findings.parquet, shared with analyze).",
)
def report(
    root: StorePath,
    output: Path,
    run_ids: tuple[str, ...],
    title: str | None,
    max_runs: int,
    no_cache: bool,
) -> None:
    """Write one self-contained HTML report of ROOT: opens offline, from a file or a mail.

    Findings (linked to the charts that show them), runs, curves, predictions
    (confusion matrices, per-class recall, residuals), gradients, weights and updates,
    the model's inputs, activations, model summary, system timing and memory, export
    benchmarks and a comparison of every run's hyperparameters with its best
    validation metric, and what mattered (which hyperparameters explain it).

    \b
    Example:
      telemetry report runs/ -o report.html
      telemetry report runs/ -o one.html --run healthy-20250101-120000-ab12cd34 --title "PR 42"
    """
    store = common.open_root(root)
    diagnosis = diagnose(store, run_ids, cache=not no_cache)
    limit = None if run_ids or max_runs == 0 else max_runs
    path = write_report(store, diagnosis, output, title=title, max_runs=limit)
    size = path.stat().st_size
    click.echo(
        f"wrote {printable(str(path))} ({size / 1e6:.2f} MB, {size:,} bytes, "
        f"{len(diagnosis.runs)} runs)"
    )
