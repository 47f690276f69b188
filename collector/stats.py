"""Summary statistics of many tensors, reduced on their device, moved to the host once.

Only cheap reductions run on the device: ``sum``, ``dot(x, x)``, ``aminmax`` and
``count_nonzero`` (NumPy's on the CPU; on this project's 2-core CPU, per 11M floats:
~1-3 ms each, where ``std`` costs ~27 ms, ``(x == 0).sum()`` ~47 ms and a float64
``sum`` ~6 ms).
Everything else is derived on the host in float64: ``norm = sqrt(sumsq)``,
``std`` from sum and sum of squares, ``abs_max = max(-min, max)``.

Precision trade-off: the sums accumulate in float32, so ``std`` loses digits when
``|mean| >> std`` (rare for weights and gradients; never worse than float32).

Non-finite values propagate into sum/min/max; only when a tensor's reduction is
non-finite do we count its NaN/Inf elements exactly, in a second pass over just
those tensors. Healthy steps pay for one pass and one transfer.

The host side is columnar: one list per statistic (``HostStats``), derived column by
column; the writer hands each column to Arrow in one call (a dict per tensor cost
~7 us a row on the training thread, and as much again in the writer).
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_COUNTS = ("numel", "nonfinite")  # the integer columns
# The columns of HostStats, in this order (the ``tensors`` stream's statistics).
COLUMNS = ("numel", "norm", "mean", "std", "min", "max", "abs_max", "zero_frac", "nonfinite")


@dataclass
class PendingStats:
    """Device-side reductions of ``tensors``, not yet on the host.

    ``negate`` marks tensors whose statistics must be reported for ``-x`` (used
    for updates, which are computed in place as ``w_{t-1} - w_t``).
    """

    tensors: list[torch.Tensor]
    reduced: torch.Tensor  # [n, 5] float64 on the tensors' device
    negate: bool = False


@dataclass
class HostStats:
    """The statistics of ``len(self)`` tensors on the host: one list per column."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.columns["numel"])

    def packed(self, names: Sequence[str] = COLUMNS) -> dict[str, array.array[Any]]:
        """``names`` as packed arrays (int64 counts, float64 statistics): what the writer
        takes without touching a Python object per value (``store.records``)."""
        return {
            name: array.array("q" if name in _COUNTS else "d", self.columns[name]) for name in names
        }

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per tensor (tests and small callers; the collector uses ``packed``)."""
        return [
            dict(zip(COLUMNS, row, strict=True)) for row in zip(*self.columns.values(), strict=True)
        ]


def concat(parts: Sequence[HostStats]) -> HostStats:
    """The statistics of several groups of tensors as one (rows in the given order)."""
    return HostStats({k: [v for p in parts for v in p.columns[k]] for k in COLUMNS})


def reduce(tensors: Sequence[torch.Tensor], *, negate: bool = False) -> PendingStats:
    """Queue the reductions of ``tensors`` on their device; no host synchronisation."""
    all_xs = [_as_float(t.detach()) for t in tensors]
    xs = [x for x in all_xs if x.numel()]
    if len(xs) < len(all_xs):  # empty tensors (a batch of 0): reduce the rest, NaN rows later
        full = reduce(xs, negate=negate)
        return PendingStats(all_xs, _scatter_rows(full.reduced, all_xs), negate)
    if not xs:
        return PendingStats([], torch.zeros(0, 5, dtype=torch.float64), negate)
    # One stack per dtype family instead of one per statistic: at ~5 us an operation,
    # the bookkeeping around the reductions costs as much as they do on a small model.
    parts: list[torch.Tensor] = []
    for x in xs:
        flat = x.reshape(-1)
        low, high = torch.aminmax(flat)
        parts += [flat.sum(), torch.dot(flat, flat), low, high]
    floats = torch.stack(parts).view(len(xs), 4).double()
    return PendingStats(xs, torch.cat([floats, _nonzero_counts(xs)], dim=1), negate)


NUMPY_ZEROS_FROM = 1 << 14
"""CPU tensors of at least this many elements have their zeros counted by NumPy."""


def _nonzero_counts(xs: list[torch.Tensor]) -> torch.Tensor:
    """Each tensor's count of non-zero elements, as a ``[n, 1]`` float64 column. Large
    CPU tensors by NumPy: torch's ``count_nonzero`` costs 4.6 ms per 1M floats of a
    ReLU's output (half zeros) on this project's CPU, ``np.count_nonzero(a != 0)``
    0.1 ms (``benchmarks/hot_path.py``); the same count (NaN is non-zero, -0.0 zero).
    Below ``NUMPY_ZEROS_FROM`` elements the call's overhead outweighs it."""
    counts = [
        torch.tensor(np.count_nonzero(x.numpy() != 0))
        if x.numel() >= NUMPY_ZEROS_FROM and x.device.type == "cpu"
        else torch.count_nonzero(x)
        for x in xs
    ]
    return torch.stack(counts).double().unsqueeze(1)


def to_host(pending: Sequence[PendingStats]) -> list[HostStats]:
    """Move every pending reduction to the host in one transfer and derive the statistics.

    Returns one ``HostStats`` per ``PendingStats``, with the ``tensors`` stream
    columns ``numel, norm, mean, std, min, max, abs_max, zero_frac, nonfinite``.
    """
    parts = [p.reduced for p in pending]
    if not parts or all(p.shape[0] == 0 for p in parts):
        return [_derive([], torch.zeros(0, 5, dtype=torch.float64), negate=False) for _ in pending]
    device = next(p.device for p in parts if p.shape[0])
    host = torch.cat([p.to(device) for p in parts]).cpu()
    out: list[HostStats] = []
    row = 0
    for p in pending:
        n = len(p.tensors)
        out.append(_derive(p.tensors, host[row : row + n], negate=p.negate))
        row += n
    return out


def _scatter_rows(reduced: torch.Tensor, xs: list[torch.Tensor]) -> torch.Tensor:
    """Spread the rows of the non-empty tensors over all of ``xs`` (NaN for empty ones)."""
    out = torch.full((len(xs), 5), math.nan, dtype=torch.float64, device=reduced.device)
    keep = [i for i, x in enumerate(xs) if x.numel()]
    if keep:
        out[keep] = reduced
    return out


def _derive(xs: list[torch.Tensor], v: torch.Tensor, *, negate: bool) -> HostStats:
    """The statistics of ``xs`` from their reductions ``v`` ([n, 5] float64, host).

    Column by column in plain Python: at a few dozen tensors a step this beats both a
    dict per tensor and float64 tensor arithmetic (~5 us an operation, ~35 of them).
    Rows that are empty, non-finite, or whose float32 sum of squares under- or
    overflowed are redone one at a time (``_derive_one``)."""
    if not xs:
        return HostStats({key: [] for key in COLUMNS})
    numel = [x.numel() for x in xs]
    s, sq, low, high, nonzero = (list(c) for c in zip(*v.tolist(), strict=True))
    if negate:
        s, low, high = [-a for a in s], [-b for b in high], [-a for a in low]
    # These formulas never raise; the rows they get wrong are redone below.
    columns: dict[str, list[Any]] = {
        "numel": numel,
        "norm": [math.sqrt(q) if q >= 0 else math.nan for q in sq],
        "mean": [a / n if n else math.nan for a, n in zip(s, numel, strict=True)],
        "std": [
            math.sqrt(max((q - a * a / n) / (n - 1), 0.0)) if n > 1 else 0.0
            for a, q, n in zip(s, sq, numel, strict=True)
        ],
        "min": low,
        "max": high,
        "abs_max": [max(-a, b) + 0.0 for a, b in zip(low, high, strict=True)],  # not -0.0
        "zero_frac": [(n - z) / n if n else math.nan for n, z in zip(numel, nonzero, strict=True)],
        "nonfinite": [0] * len(xs),
    }
    finite = all(map(math.isfinite, s + sq + low + high))
    if finite and min(sq) >= 1e-30 and min(numel) > 0:
        return HostStats(columns)
    for i, n in enumerate(numel):
        ordinary = n and math.isfinite(s[i] + sq[i] + low[i] + high[i])
        if ordinary and not (nonzero[i] > 0 and sq[i] < 1e-30):
            continue
        row = _derive_one(xs[i], [s[i], sq[i], low[i], high[i], nonzero[i]], negate=negate)
        for key, value in row.items():
            columns[key][i] = value
    return HostStats(columns)


def _derive_one(x: torch.Tensor, v: list[float], *, negate: bool) -> dict[str, float | int]:
    """The statistics of one tensor whose reductions need care (``v`` already negated)."""
    n = x.numel()
    if n == 0:
        return dict.fromkeys(COLUMNS, math.nan) | {"numel": 0, "nonfinite": 0}
    s, sq, mn, mx, nz = v
    nonfinite = 0
    if not (math.isfinite(s) and math.isfinite(mn) and math.isfinite(mx)):
        # The run is already broken: count exactly, one extra sync.
        nonfinite = int((~torch.isfinite(x)).sum())
    overflowed = not math.isfinite(sq) and nonfinite == 0
    underflowed = nz > 0 and sq < 1e-30  # squares of |x| < ~1e-19 vanish in float32
    if overflowed or underflowed:
        # Finite elements whose float32 sum of squares overflowed (norm > ~1.8e19) or
        # underflowed: redo the two sums in float64, on this tensor only.
        s = float(x.sum(dtype=torch.float64)) * (-1 if negate else 1)
        sq = float(torch.linalg.vector_norm(x, dtype=torch.float64)) ** 2
    mean = s / n
    if n > 1:
        var = max((sq - s * s / n) / (n - 1), 0.0) if math.isfinite(sq) else math.nan
    else:
        var = 0.0
    return {
        "numel": n,
        "norm": math.sqrt(sq) if sq >= 0 else math.nan,
        "mean": mean,
        "std": math.sqrt(var) if not math.isnan(var) else math.nan,
        "min": mn,
        "max": mx,
        "abs_max": max(-mn, mx) if not (math.isnan(mn) or math.isnan(mx)) else math.nan,
        "zero_frac": (n - nz) / n,
        "nonfinite": nonfinite,
    }


def _as_float(t: torch.Tensor) -> torch.Tensor:
    # Half-precision sums overflow quickly; float64 stays float64 (exact enough already).
    return t if t.dtype in (torch.float32, torch.float64) else t.float()
