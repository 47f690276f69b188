"""Summary statistics of many tensors, reduced on their device, moved to the host once.

Only cheap reductions run on the device: ``sum``, ``dot(x, x)``, ``aminmax`` and
``count_nonzero`` (on this project's 2-core CPU, per 11M floats: ~3-6 ms each, where
``std`` costs ~27 ms, ``(x == 0).sum()`` ~66 ms and a float64 ``sum`` ~120 ms).
Everything else is derived on the host in float64: ``norm = sqrt(sumsq)``,
``std`` from sum and sum of squares, ``abs_max = max(-min, max)``.

Precision trade-off: the sums accumulate in float32, so ``std`` loses digits when
``|mean| >> std`` (rare for weights and gradients; never worse than float32).

Non-finite values propagate into sum/min/max; only when a tensor's reduction is
non-finite do we count its NaN/Inf elements exactly, in a second pass over just
those tensors. Healthy steps pay for one pass and one transfer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Column order of the stacked device result.
_SUM, _SUMSQ, _MIN, _MAX, _NONZERO = range(5)


@dataclass
class PendingStats:
    """Device-side reductions of ``tensors``, not yet on the host.

    ``negate`` marks tensors whose statistics must be reported for ``-x`` (used
    for updates, which are computed in place as ``w_{t-1} - w_t``).
    """

    tensors: list[torch.Tensor]
    reduced: torch.Tensor  # [5, n] float64 on the tensors' device
    negate: bool = False


def reduce(tensors: Sequence[torch.Tensor], *, negate: bool = False) -> PendingStats:
    """Queue the reductions of ``tensors`` on their device; no host synchronisation."""
    all_xs = [_as_float(t.detach()) for t in tensors]
    xs = [x for x in all_xs if x.numel()]
    if len(xs) < len(all_xs):  # empty tensors (a batch of 0): reduce the rest, NaN rows later
        full = reduce(xs, negate=negate)
        return PendingStats(all_xs, _scatter_columns(full.reduced, all_xs), negate)
    if not xs:
        return PendingStats([], torch.zeros(5, 0, dtype=torch.float64), negate)
    sums = torch.stack([x.sum() for x in xs])
    flat = [x.reshape(-1) for x in xs]
    sumsq = torch.stack([torch.dot(f, f) for f in flat])
    mins, maxs = zip(*(torch.aminmax(x) for x in xs), strict=True)
    nonzero = torch.stack([torch.count_nonzero(x) for x in xs])
    reduced = torch.cat(
        [
            torch.stack([sums, sumsq, torch.stack(mins), torch.stack(maxs)]).double(),
            nonzero.double().unsqueeze(0),
        ]
    )
    return PendingStats(xs, reduced, negate)


def to_host(pending: Sequence[PendingStats]) -> list[list[dict[str, float | int]]]:
    """Move every pending reduction to the host in one transfer and derive the statistics.

    Returns, per ``PendingStats``, one dict per tensor with the ``tensors`` stream
    columns ``numel, norm, mean, std, min, max, abs_max, zero_frac, nonfinite``.
    """
    parts = [p.reduced for p in pending]
    if not parts or all(p.shape[1] == 0 for p in parts):
        return [[] for _ in pending]
    device = next(p.device for p in parts if p.shape[1])
    host = torch.cat([p.to(device) for p in parts], dim=1).cpu().tolist()
    out: list[list[dict[str, float | int]]] = []
    col = 0
    for p in pending:
        rows = []
        for i, x in enumerate(p.tensors):
            values = [host[k][col + i] for k in range(5)]
            rows.append(_derive(x, values, negate=p.negate))
        col += len(p.tensors)
        out.append(rows)
    return out


def _scatter_columns(reduced: torch.Tensor, xs: list[torch.Tensor]) -> torch.Tensor:
    """Spread the columns of the non-empty tensors over all of ``xs`` (NaN for empty ones)."""
    out = torch.full((5, len(xs)), math.nan, dtype=torch.float64, device=reduced.device)
    keep = [i for i, x in enumerate(xs) if x.numel()]
    if keep:
        out[:, keep] = reduced
    return out


def _derive(x: torch.Tensor, v: list[float], *, negate: bool) -> dict[str, float | int]:
    n = x.numel()
    if n == 0:
        return {
            "numel": 0,
            "norm": math.nan,
            "mean": math.nan,
            "std": math.nan,
            "min": math.nan,
            "max": math.nan,
            "abs_max": math.nan,
            "zero_frac": math.nan,
            "nonfinite": 0,
        }
    s, sq, mn, mx, nz = v
    if negate:
        s, mn, mx = -s, -mx, -mn
    nonfinite = 0
    if not (math.isfinite(s) and math.isfinite(mn) and math.isfinite(mx)):
        # Rare path (the run is already broken): count exactly, one extra sync.
        nonfinite = int((~torch.isfinite(x)).sum())
    overflowed = not math.isfinite(sq) and nonfinite == 0
    underflowed = nz > 0 and sq < 1e-30  # squares of |x| < ~1e-19 vanish in float32
    if overflowed or underflowed:
        # Finite elements whose float32 sum of squares overflowed (norm > ~1.8e19) or
        # underflowed: redo the two sums in float64, on this tensor only (rare).
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
