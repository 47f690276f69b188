"""Histograms -> rows of the store: summary statistics (``tensors``) and quantiles (``scalars``).

A TensorBoard histogram keeps ``min``, ``max``, ``num``, ``sum``, ``sum_squares`` and
bucket counts with their right edges (``bucket_limit``). From those, exactly:
``numel = num``, ``mean = sum / num``, ``std`` (with Bessel's correction, like the
collector's own statistics) from ``sum`` and ``sum_squares``, ``norm =
sqrt(sum_squares)``, ``abs_max = max(-min, max)``. ``zero_frac`` and ``nonfinite``
are not recoverable from buckets and stay null.

Quantiles have no column in the ``tensors`` stream, so they are ``scalars`` rows:
name = the histogram's tag, split = ``p0``, ``p6.68``, ``p15.87``, ``p30.85``,
``p50``, ``p69.15``, ``p84.13``, ``p93.32``, ``p100`` — the percentiles of
TensorBoard's distributions dashboard (the median and +-1, 2, 3 sigma of a normal
distribution). From buckets they are interpolated linearly inside the bucket, the
way TensorBoard does (``Histogram::Percentile``); from a tensor (the
``SummaryWriter`` shim) they are exact. No torch here: the importer does not need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

QUANTILE_BPS = (0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000)
"""TensorBoard's ``NORMAL_HISTOGRAM_BPS``: percentiles in basis points (1/100 %)."""

QUANTILE_SPLITS = tuple(f"p{bp / 100:g}" for bp in QUANTILE_BPS)
"""The ``split`` of each quantile row: ``p0`` ... ``p100``."""


@dataclass(frozen=True)
class Histogram:
    """A TensorBoard ``HistogramProto``'s fields (``bucket_limit[i]``: right edge of bucket i)."""

    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limit: Sequence[float]
    bucket: Sequence[float]

    @classmethod
    def of(cls, proto: Any) -> Histogram:
        """From anything with the proto's attribute names (the proto, EventAccumulator's value)."""
        return cls(
            float(proto.min),
            float(proto.max),
            float(proto.num),
            float(proto.sum),
            float(proto.sum_squares),
            [float(v) for v in proto.bucket_limit],
            [float(v) for v in proto.bucket],
        )


def statistics(h: Histogram) -> dict[str, Any]:
    """The ``tensors`` columns ``numel .. abs_max`` this histogram determines exactly."""
    n = h.num
    if n <= 0:
        nan = math.nan
        return {"numel": 0, "norm": nan, "mean": nan, "std": nan, "min": nan, "max": nan,
                "abs_max": nan, "zero_frac": None, "nonfinite": None}  # fmt: skip
    mean = h.sum / n
    var = max((h.sum_squares - h.sum * h.sum / n) / (n - 1), 0.0) if n > 1 else 0.0
    return {
        "numel": int(n),
        "norm": math.sqrt(h.sum_squares) if h.sum_squares >= 0 else math.nan,
        "mean": mean,
        "std": math.sqrt(var),
        "min": h.min,
        "max": h.max,
        "abs_max": max(-h.min, h.max),
        "zero_frac": None,
        "nonfinite": None,
    }


def bucket_quantiles(h: Histogram, bps: Sequence[int] = QUANTILE_BPS) -> list[float]:
    """Quantiles at ``bps`` (basis points), interpolated inside buckets as TensorBoard does."""
    if not h.num or not h.bucket:
        return [0.0 for _ in bps]  # what TensorBoard draws for an empty histogram
    total = sum(h.bucket) or 1.0
    cumulative, running = [], 0.0
    for count in h.bucket:
        running += count * bps[-1] / total
        cumulative.append(running)
    out = []
    for bp in bps:
        value = h.max
        for i, cum in enumerate(cumulative):
            prev = cumulative[i - 1] if i else 0.0
            if cum <= bp or cum == prev:
                continue
            lhs = h.min if not i or not prev else max(h.bucket_limit[i - 1], h.min)
            rhs = min(h.bucket_limit[i], h.max)
            value = lhs + (bp - prev) / (cum - prev) * (rhs - lhs)
            break
        out.append(value)
    return out


def quantile_columns(tag: str, values: Sequence[float]) -> dict[str, list[Any]]:
    """The ``scalars`` columns of one histogram's quantile rows (``values``: QUANTILE_BPS order)."""
    return {"name": [tag] * len(values), "split": list(QUANTILE_SPLITS), "value": list(values)}
