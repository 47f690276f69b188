"""Ranks: which process of a distributed job this is, and the run id the ranks share.

Every rank writes its own segments (``<rank>-<attempt>-<seq>.parquet``) under one
run: no lock, no shared index, and no collective in the training step. Two facts
are settled once, inside ``Collector(...)``:

- the rank: ``torch.distributed.get_rank()`` when a process group is initialised,
  else the ``RANK`` environment variable that torchrun and
  ``torch.distributed.launch`` set, else 0;
- the run id: rank 0 creates the run and, when a process group of more than one
  rank is initialised, sends the id to the others with one
  ``broadcast_object_list`` (start-up only). Without a process group a rank > 0
  cannot learn it and is told to pass ``resume=<rank 0's run id>``.

What each rank records: scalars, timing and memory (``system``), activations and
events on every rank, since they differ between ranks (each sees its own batches and
runs on its own device). Per-parameter statistics (``tensors``) only on rank 0 by
default: after data parallelism's all-reduce (DDP, Horovod) every rank holds the same
gradients, weights and updates, so the other ranks would pay for the reductions and
write identical rows. Where ranks hold different parameters (FSDP or ZeRO shards,
tensor or pipeline parallelism) set ``TELEMETRY_PARAM_STATS_RANKS=all`` in the
environment of every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from store.errors import ConfigError, StoreError


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    group: bool
    """Whether a torch.distributed process group (of any size) is initialised."""

    @property
    def shares_run(self) -> bool:
        return self.group and self.world_size > 1


def placement() -> Placement:
    """This process's rank and world size (``Placement(0, 1, False)`` when not distributed)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return Placement(dist.get_rank(), dist.get_world_size(), True)
    rank = _env_int("RANK", 0)
    return Placement(rank, max(_env_int("WORLD_SIZE", 1), rank + 1), False)


def shared_run_id(where: Placement, create: Callable[[], str]) -> str:
    """Rank 0 calls ``create()``; every rank returns its result (or rank 0's error).

    Rank 0 sends an error too, so a failed start on rank 0 fails every rank instead
    of leaving them waiting in the broadcast.
    """
    if not where.shares_run:
        if where.rank != 0:
            raise ConfigError(
                f"this process is rank {where.rank} (from RANK) but no torch.distributed "
                "process group is initialised, so it cannot learn rank 0's run id: call "
                "torch.distributed.init_process_group() before Collector(...), or pass "
                "resume=<rank 0's run id>"
            )
        return create()
    message: list[object] = [None]
    error: BaseException | None = None
    if where.rank == 0:
        try:
            message[0] = ("ok", create())
        except Exception as e:
            error = e
            message[0] = ("error", f"{type(e).__name__}: {e}")
    torch.distributed.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    reply = message[0]
    if not isinstance(reply, tuple) or len(reply) != 2 or reply[0] != "ok":
        detail = reply[1] if isinstance(reply, tuple) and len(reply) == 2 else reply
        raise StoreError(f"rank 0 could not start the run: {detail}")
    return str(reply[1])


PARAM_STATS_RANKS_ENV = "TELEMETRY_PARAM_STATS_RANKS"
"""``0`` (the default): parameter statistics on rank 0 only; ``all``: on every rank."""

Every = TypeVar("Every")


def param_stats_every(where: Placement, every: Every) -> Every | int:
    """``every`` (a stride or a schedule) on the ranks that record parameter statistics,
    0 (never) on the others; see the module docstring."""
    raw = os.environ.get(PARAM_STATS_RANKS_ENV, "0").strip().lower() or "0"
    if raw not in ("0", "all"):
        raise ConfigError(
            f"environment variable {PARAM_STATS_RANKS_ENV}={raw!r}: expected '0' (parameter "
            "statistics on rank 0 only, the default) or 'all' (on every rank: FSDP/ZeRO "
            "shards, model parallelism)"
        )
    return every if where.rank == 0 or raw == "all" else 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"environment variable {name}={raw!r} is not a rank number >= 0")
    return value
