"""What the verbs share: the store-level exit code and opening a store for a verb.

Its own module so that ``telemetry.query`` and ``telemetry.runs`` need nothing from
``telemetry.cli`` (the group imports the verbs, never the other way round).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.output import CliError

if TYPE_CHECKING:
    from analysis import Store

EXIT_STORE = 3


class StoreProblem(CliError):
    """The store or a run cannot be found or read: exit 3, naming the problem."""

    exit_code = EXIT_STORE


def open_root(root: Path, *, runs_only: bool = False) -> Store:
    """The store at ``root``, or ``StoreProblem`` naming why not."""
    # analysis pulls in duckdb + polars (~0.3 s); only the verbs that read pay for it.
    from analysis import StoreError, open_store

    try:
        return open_store(root, runs_only=runs_only)
    except StoreError as e:
        raise StoreProblem(str(e)) from e
