"""``telemetry import tensorboard LOGDIR --root ROOT``: old TensorBoard runs into a store.

The verb; what it reads and writes is ``integrations.tensorboard.importer``, beside the
``SummaryWriter`` drop-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from integrations.tensorboard.importer import imported_paths, run_name, skipped_note, write_run
from integrations.tensorboard.subruns import find_runs
from telemetry import common
from telemetry.common import printable

if TYPE_CHECKING:
    from store.location import StorePath


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
    type=common.STORE_ROOT,
    help="The store to import into (created if missing; a directory or an s3:// URL).",
)
@click.option("--again", is_flag=True, help="Import run directories imported before, again.")
def tensorboard(logdir: Path, root: StorePath, again: bool) -> None:
    """Import the TensorBoard runs under LOGDIR: scalars, histograms and text.

    One run of the store per directory holding event files, except the directories
    add_scalars and add_hparams split off a run: those are imported into it. Needs the
    tensorboard package (pip install tensorboard).

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
    found = find_runs(logdir)
    if not found:
        raise click.BadParameter(
            f"no TensorBoard event files (events.out.tfevents.*) under {str(logdir)!r}",
            param_hint="'LOGDIR'",
        )
    from store.claims import store_dir
    from store.errors import StoreError

    try:
        root = store_dir(root)
    except StoreError as e:
        raise common.cli_error(e) from e
    done = set() if again else imported_paths(root)
    for each in found:
        run_dir = each.path
        name = run_name(logdir, run_dir)
        shown = printable(name)  # a directory name can hold terminal escapes
        if str(run_dir.resolve()) in done:
            click.echo(f"{shown}: imported before, skipped (--again imports it again)")
            continue
        run = each.read()
        if not run.scalars and not run.histograms:
            click.echo(f"{shown}: no scalars or histograms, skipped{skipped_note(run)}")
            continue
        run_id = write_run(root, name, run_dir, run)
        tags = len({(s.tag, s.key) for s in run.scalars}), len({h.tag for h in run.histograms})
        click.echo(
            f"{shown} -> {printable(run_id)}: {len(run.scalars)} scalars "
            f"({tags[0]} tags), {len(run.histograms)} histograms "
            f"({tags[1]} tags), {len(run.texts)} texts{_subruns_note(run.subruns)}"
            f"{skipped_note(run)}"
        )
    where = printable(str(root))
    click.echo(f"next: telemetry analyze {where}   |   telemetry report {where}")


def _subruns_note(subruns: list[str]) -> str:
    if not subruns:
        return ""
    shown = ", ".join(printable(s) for s in subruns[:5])
    more = f" and {len(subruns) - 5} more" if len(subruns) > 5 else ""
    return f"; with the sub-runs {shown}{more}"
