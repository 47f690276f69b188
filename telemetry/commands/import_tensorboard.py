"""``telemetry import tensorboard LOGDIR --root ROOT``: old TensorBoard runs into a store.

The verb; what it reads and writes is ``integrations.tensorboard.importer``, beside the
``SummaryWriter`` drop-in.
"""

from __future__ import annotations

from pathlib import Path

import click

from integrations.tensorboard.importer import (
    find_runs,
    imported_paths,
    read_run,
    run_name,
    skipped_note,
    write_run,
)
from telemetry.common import printable


@click.group("import")
def import_group() -> None:
    """Bring runs recorded by other tools into a store.

    \b
    Example:
      telemetry import tensorboard tb_logs/ --root runs/
    """


@import_group.command("tensorboard")
@click.argument("logdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The store to import into (created if missing).",
)
@click.option("--again", is_flag=True, help="Import run directories imported before, again.")
def tensorboard(logdir: Path, root: Path, again: bool) -> None:
    """Import the TensorBoard runs under LOGDIR: scalars, histograms and text.

    One run of the store per directory holding event files. Needs the tensorboard
    package (pip install tensorboard).

    \b
    Example:
      telemetry import tensorboard tb_logs/ --root runs/
      telemetry analyze runs/
      telemetry report runs/ -o report.html
    """
    try:
        # The reader pulls in tensorboard and protobuf (~1 s); only this verb pays for it.
        from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
    except ImportError as e:
        raise click.ClickException(
            "importing TensorBoard logs needs the tensorboard package: pip install tensorboard"
        ) from e
    run_dirs = find_runs(logdir)
    if not run_dirs:
        raise click.BadParameter(
            f"no TensorBoard event files (events.out.tfevents.*) under {str(logdir)!r}",
            param_hint="'LOGDIR'",
        )
    root.mkdir(parents=True, exist_ok=True)
    done = set() if again else imported_paths(root)
    for run_dir in run_dirs:
        name = run_name(logdir, run_dir)
        shown = printable(name)  # a directory name can hold terminal escapes
        if str(run_dir.resolve()) in done:
            click.echo(f"{shown}: imported before, skipped (--again imports it again)")
            continue
        run = read_run(run_dir)
        if not run.scalars and not run.histograms:
            click.echo(f"{shown}: no scalars or histograms, skipped{skipped_note(run)}")
            continue
        run_id = write_run(root, name, run_dir, run)
        tags = len({s.tag for s in run.scalars}), len({h.tag for h in run.histograms})
        click.echo(
            f"{shown} -> {printable(run_id)}: {len(run.scalars)} scalars "
            f"({tags[0]} tags), {len(run.histograms)} histograms "
            f"({tags[1]} tags), {len(run.texts)} texts{skipped_note(run)}"
        )
    where = printable(str(root))
    click.echo(f"next: telemetry analyze {where}   |   telemetry report {where}")
