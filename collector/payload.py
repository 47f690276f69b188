"""The payloads of the events that describe a run: ``run_started`` and ``sampling``."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
from typing import Any

import torch

from collector.budget import DENSE_ACTIVATIONS_EVERY, OverheadBudget, Strides
from collector.distributed import Placement
from collector.system import memory_total_bytes
from store.liveness import process_identity
from store.schema import SCHEMA_VERSION


def run_started(
    *,
    name: str | None,
    config: dict[str, Any],
    placement: Placement,
    attempt: int,
    resumed: bool,
    start_step: int,
    device: torch.device,
    model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    watched: list[tuple[str, torch.nn.Parameter]],
    sampling: dict[str, Any],
) -> dict[str, Any]:
    """Who, where and what: the ``run_started`` payload (``config`` as stored)."""
    return {
        "name": name,
        "config": config,
        "rank": placement.rank,
        "world_size": placement.world_size,
        "attempt": attempt,
        "resumed": resumed,
        "start_step": start_step,
        "schema_version": SCHEMA_VERSION,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "process": process_identity(os.getpid()),  # store.liveness: crashed at once
        "argv": sys.argv[:20],
        "device": str(device),
        # the CUDA devices this process could use (device_fit: a run on the CPU beside them)
        "cuda_devices": torch.cuda.device_count(),
        # what system.max_memory_bytes is measured against (memory_pressure)
        "memory_total_bytes": memory_total_bytes(device),
        "model": type(model).__name__ if model is not None else None,
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "parameters": sum(p.numel() for p in model.parameters()) if model is not None else None,
        "trainable_parameters": sum(p.numel() for _, p in watched),
        "watched_parameters": len(watched),
        "sampling": sampling,
    }


def sampling_start(
    budget: OverheadBudget | None, *, stats_every: object, activations_every: object
) -> dict[str, Any]:
    """How statistics are sampled at the start: fixed strides (``budget`` None: the
    given ``stats_every`` and ``activations_every``), or the budget's dense start."""
    if budget is None:
        return {"stats_every": stats_every, "activations_every": activations_every}
    fixed = budget.strides
    return {
        "stats_every": 1 if budget.fixed_stats_every is None else fixed.stats_every,
        "activations_every": DENSE_ACTIVATIONS_EVERY
        if budget.fixed_activations_every is None
        else fixed.activations_every,
        "overhead_budget": budget.budget,
        "dense_steps": budget.dense_steps,
    }


def sampling_change(budget: OverheadBudget, strides: Strides, reason: str) -> dict[str, Any]:
    """A ``sampling`` event's payload: the new strides, why, and the measured costs."""
    return {
        "stats_every": strides.stats_every,
        "activations_every": strides.activations_every,
        "reason": reason,
        "overhead_budget": budget.budget,
        **budget.measured,
    }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None
