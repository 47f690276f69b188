"""The collector's claim: its run directory and attempt, ``store.claims`` across ranks.

With a torch.distributed process group, rank 0 claims a fresh run directory and the
other ranks are told its id (``collector.distributed``); every rank then claims its
own attempt number in it (``store.claims`` says how claims stay unshared).
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.distributed import Placement, shared_run_id
from store import layout
from store.claims import claim_attempt, claim_run_dir, existing_run_dir, last_recorded_step
from store.errors import StoreError
from store.location import StorePath


@dataclass(frozen=True)
class Place:
    run_id: str
    run_dir: StorePath
    attempt: int
    last_step: int
    """The last step this rank recorded in the run before (0 for a fresh run)."""


def claim(root: StorePath, where: Placement, *, name: str | None, resume: str | None) -> Place:
    """A run directory (fresh, or ``resume``'s) and this rank's next attempt in it."""
    if resume is None:
        run_id = shared_run_id(where, lambda: claim_run_dir(root, name))
        run_dir = layout.run_dir(root, run_id)
    else:
        run_id, run_dir = resume, existing_run_dir(root, resume)
    try:
        attempt = claim_attempt(run_dir, where.rank)
    except OSError as e:
        raise StoreError(f"cannot start run {run_id!r} in {str(root)!r}: {e}") from e
    last = last_recorded_step(run_dir, where.rank) if resume is not None else 0
    return Place(run_id, run_dir, attempt, last)
