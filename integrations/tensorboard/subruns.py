"""TensorBoard's sub-runs: the directories torch's ``SummaryWriter`` splits one run into.

TensorBoard lists one run per directory holding event files, and two calls of
``torch.utils.tensorboard.SummaryWriter`` (tensorboardX's too) write beside the run's
own file, into new directories:

* ``add_scalars(main_tag, {key: value})`` writes each value under the tag ``main_tag``
  into ``<run>/<main_tag, "/" as "_">_<key>/``: ``add_scalars("loss", {"train": a,
  "val": b})`` in ``exp`` gives TensorBoard the runs ``exp/loss_train`` and
  ``exp/loss_val``, for what is the loss of ``exp``;
* ``add_hparams(hparams, metrics)`` writes the hparams plugin's summaries and the
  metrics, as scalars, into ``<run>/<time.time()>/``.

``telemetry import tensorboard`` imports such a directory into its parent run (one run
of the store per training run, so that ``loss/val`` and ``loss/train`` meet), but only
when everything in it says it is one, so that genuine runs nested in one another
(``runs/`` with an event file of its own beside ``runs/exp1``, ``runs/exp2``) stay runs:

* ``add_scalars``: a directory above it (up to LOGDIR) holds event files, it holds
  scalars of exactly one tag and nothing else, and its path under that directory is the
  tag with ``/`` as ``_``, a ``_`` and a non-empty key (the nearest such directory is
  the parent);
* ``add_hparams``: the directory above it holds event files, its name is a
  ``time.time()`` (9 digits or more, a fraction optional: a sweep's
  ``add_hparams(..., run_name="1")`` stays a run), it holds the hparams plugin's session
  start, and its only other data are scalars of the metrics the plugin's experiment
  names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from integrations.tensorboard.importer import TensorBoardRun, read_run

_TIMESTAMP = re.compile(r"\d{9,}(\.\d+)?")
"""``str(time.time())``: the name ``add_hparams`` gives its directory without a run_name."""


@dataclass(frozen=True)
class SubRun:
    path: Path
    where: str
    """Its path under the parent run's directory (``Loss_train``)."""
    key: str | None
    """The ``add_scalars`` key its scalars belong to (``train``); None for ``add_hparams``."""
    run: TensorBoardRun


@dataclass(frozen=True)
class FoundRun:
    """A TensorBoard run directory and the sub-runs that belong to it."""

    path: Path
    subruns: tuple[SubRun, ...] = ()

    def read(self) -> TensorBoardRun:
        """The run's events and its sub-runs' (``read_run``), as one run."""
        run = read_run(self.path)
        for sub in self.subruns:
            run.merge(sub.run, sub.where, key=sub.key)
        return run


def find_runs(logdir: Path) -> list[FoundRun]:
    """The runs under (and including) ``logdir``, sorted by path, each with its sub-runs.

    A directory that may be a sub-run by its name is read to decide (see the module
    docstring); the others are not read here.
    """
    dirs = sorted({p.parent for p in logdir.rglob("*tfevents*") if p.is_file()})
    runs: dict[Path, list[SubRun]] = {}
    for path in dirs:  # sorted: a directory comes before the directories under it
        found = _as_subrun(path, runs)
        if found is None:
            runs[path] = []
        else:
            parent, sub = found
            runs[parent].append(sub)
    return [FoundRun(path, tuple(subs)) for path, subs in runs.items()]


def _as_subrun(path: Path, runs: dict[Path, list[SubRun]]) -> tuple[Path, SubRun] | None:
    """(parent, sub-run) when ``path`` is a sub-run of one of ``runs``, else None."""
    ancestors = [a for a in path.parents if a in runs]  # nearest first
    timestamped = path.parent in runs and _TIMESTAMP.fullmatch(path.name) is not None
    if not timestamped and not any("_" in path.relative_to(a).as_posix() for a in ancestors):
        return None  # neither name fits: not worth reading
    run = read_run(path)
    if timestamped and _holds_only_hparams(run):
        return path.parent, SubRun(path, path.name, None, run)
    tag = _only_tag(run)
    if tag is None:
        return None
    prefix = tag.replace("/", "_") + "_"
    for parent in ancestors:
        where = path.relative_to(parent).as_posix()
        if where.startswith(prefix) and len(where) > len(prefix):
            return parent, SubRun(path, where, where[len(prefix) :], run)
    return None


def _holds_only_hparams(run: TensorBoardRun) -> bool:
    tags = {p.tag for p in run.scalars}
    others = run.histograms or run.texts or run.skipped
    return run.hparams is not None and not others and tags <= run.hparams_metrics


def _only_tag(run: TensorBoardRun) -> str | None:
    """The tag of an ``add_scalars`` sub-run: its scalars' one tag, when it holds nothing else."""
    tags = {p.tag for p in run.scalars}
    if len(tags) != 1 or run.histograms or run.texts or run.skipped or run.hparams is not None:
        return None
    return tags.pop()
