"""Interleaved timing rounds: every format timed under the same machine load.

Timing one format for all its calls and then the next lets whatever else the machine
does land on one of them: on a busy machine a benchmark once reported a 1,108x ONNX
Runtime speed-up that was 4.7x with one thread (issue 18). So the calls interleave:
``rounds`` rounds, each timing every unit (a format at a batch size) for ``repeats``
calls, the order rotated by one unit per round (``round_order``) so that no unit
always runs first, or always right after the same neighbour. A load spike then hits
the units of one round alike, and shows as the spread of the round samples.

Per unit (``summarise``):

* p50: the median over rounds of each round's median call.
* interval: a distribution-free confidence interval of that median, from order
  statistics of the round medians: ``[x(k), x(n+1-k)]`` with the largest ``k`` whose
  coverage ``1 - 2 P(Binomial(n, 1/2) <= k - 1)`` is at least 95 % (``CONFIDENCE``).
  Six rounds are the fewest that reach it (``[min, max]`` covers 96.9 %); ten give
  ``[x(2), x(9)]`` (97.9 %). No resampling and no random numbers: the same samples
  always give the same interval. Formats whose intervals overlap are not ranked
  against each other (``analysis/macros/exports.sql``).
* p90: of every timed call; throughput: samples per second over all timed calls.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

CONFIDENCE = 0.95
"""Coverage of the latency interval of the median."""

MIN_ROUNDS = 6
"""The fewest rounds whose ``[min, max]`` covers the median with ``CONFIDENCE``."""

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    ci_low_ms: float
    ci_high_ms: float
    throughput: float
    """Samples per second over the timed calls."""


@dataclass(frozen=True)
class Rounds:
    """What ``time_rounds`` measured: per unit, each round's call times in seconds."""

    times: dict[Hashable, list[list[float]]]
    failed: dict[Hashable, Exception]
    """Units whose call raised (in warm-up or in a round): timed no further."""
    order: list[list[Hashable]]
    """The units in the order each round timed them."""


def round_order(keys: Sequence[K], index: int) -> list[K]:
    """``keys`` rotated left by ``index``: round 0 as given, round 1 from the second..."""
    if not keys:
        return []
    shift = index % len(keys)
    return [*keys[shift:], *keys[:shift]]


def time_rounds(
    runners: Mapping[K, Callable[[], object]],
    *,
    rounds: int,
    repeats: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Rounds:
    """Time each of ``runners`` (one synchronised call each) in interleaved rounds.

    Every unit first gets ``warmup`` untimed calls; then each of ``rounds`` rounds times
    every unit's ``repeats`` consecutive calls, in ``round_order``. ``clock`` is read
    around each call (a fake one in tests).
    """
    keys = list(runners)
    times: dict[Hashable, list[list[float]]] = {k: [] for k in keys}
    failed: dict[Hashable, Exception] = {}
    order: list[list[Hashable]] = []
    for key in keys:
        try:
            for _ in range(warmup):
                runners[key]()
        except Exception as e:  # the format's own failure: recorded, the others go on
            failed[key] = e
    for index in range(rounds):
        timed: list[Hashable] = []
        for key in round_order(keys, index):
            if key in failed:
                continue
            calls = []
            try:
                for _ in range(repeats):
                    start = clock()
                    runners[key]()
                    calls.append(clock() - start)
            except Exception as e:
                failed[key] = e
                continue
            times[key].append(calls)
            timed.append(key)
        order.append(timed)
    return Rounds({k: v for k, v in times.items() if k not in failed}, failed, order)


def summarise(rounds: Sequence[Sequence[float]], batch_size: int) -> Latency:
    """p50, interval, p90 and throughput of one unit's round times (see the docstring)."""
    medians = [statistics.median(r) for r in rounds]
    calls = [t for r in rounds for t in r]
    if len(calls) < 2:
        raise ValueError(f"a latency needs at least two timed calls, got {len(calls)}")
    low, high = median_interval(medians)
    total = sum(calls)
    return Latency(
        p50_ms=statistics.median(medians) * 1000.0,
        p90_ms=statistics.quantiles(calls, n=10, method="inclusive")[8] * 1000.0,
        ci_low_ms=low * 1000.0,
        ci_high_ms=high * 1000.0,
        throughput=batch_size * len(calls) / total if total > 0 else math.inf,
    )


def median_interval(samples: Sequence[float]) -> tuple[float, float]:
    """The order-statistic interval of the median of ``samples`` (see the docstring)."""
    n = len(samples)
    if n == 0:
        raise ValueError("an interval of the median needs at least one sample")
    ordered = sorted(samples)
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= CONFIDENCE:
        k += 1
    return ordered[k - 1], ordered[n - k]


def coverage(n: int, k: int) -> float:
    """Probability that ``[x(k), x(n+1-k)]`` of ``n`` samples holds their median."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n
