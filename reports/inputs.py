"""The model's inputs per feature (or channel), shaped for the page: typical scale and range.

The ``inputs`` stream has a row per feature of the model's first input (per channel of
an image) per sampled training step: the batch's mean, std, min and max. What a reader
wants from it is the picture the rule ``unnormalized_inputs`` judges: does every
feature sit near zero with a std near one, or are some on scales a hundred times
apart, or raw 0-255 pixels? So each feature becomes one row: the median over its
sampled steps of the batch mean and std (a typical batch, not one outlier), and the
extremes of min and max (everything the model was ever fed). The first
``MAX_FEATURES`` are drawn; the sentence under the chart names how many were not.

``read`` runs the query (``reports.queries``); ``summarize`` is pure Polars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from reports.queries import query
from reports.series import SIG_DIGITS

if TYPE_CHECKING:
    from analysis import Store

MAX_FEATURES = 64
"""Features (or channels) drawn, the first by index: a wider input (a flattened image
given to an MLP records up to 256) is a wall of bars nobody reads one by one."""

WIDE_SCALES = 100.0
"""Spreads (std) this many times apart get a second panel, each std on a log axis: on
the linear one the narrow features are flat lines at zero. The rule's ``scale_ratio``."""

_INPUTS = query("inputs")


@dataclass(frozen=True)
class Inputs:
    """One row per drawn feature, and what the sentence under the chart needs."""

    features: pl.DataFrame
    """index, mean, std, lo, hi, steps (sampled steps): the first ``MAX_FEATURES``."""
    layout: str
    """``features`` (a [batch, features] input) or ``channels`` ([batch, channels, ...])."""
    total: int
    """Features recorded (``features.height`` is smaller when some were left out)."""
    wide: bool
    """The drawn features' spreads are ``WIDE_SCALES`` or more apart: a std panel."""

    @property
    def noun(self) -> str:
        return "channel" if self.layout == "channels" else "feature"

    @property
    def note(self) -> str | None:
        """The sentence under the chart when features were left out."""
        if self.features.height >= self.total:
            return None
        return (
            f"The first {self.features.height:,} of {self.total:,} {self.noun}s are drawn "
            f"({self.total - self.features.height:,} left out)."
        )


def read(store: Store, run_id: str) -> Inputs | None:
    """The run's input statistics, or None when it recorded none."""
    return summarize(store.sql(_INPUTS, {"run_id": run_id}))


def summarize(rows: pl.DataFrame, *, max_features: int = MAX_FEATURES) -> Inputs | None:
    """``rows``: layout, index, mean, std, lo, hi, steps; one per feature (``inputs.sql``).

    A statistic that is not finite (an input that held NaN or Inf) is left null: the
    chart draws what it can, and the NaN origin box says where the NaN came from.
    """
    if not rows.height:
        return None
    kept = rows.sort("index").head(max_features)
    numbers = ["mean", "std", "lo", "hi"]
    kept = kept.select(
        "index",
        *(
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).round_sig_figs(SIG_DIGITS).alias(c)
            for c in numbers
        ),
        "steps",
    )
    spreads = kept["std"].filter(kept["std"] > 0)
    low, high = spreads.min(), spreads.max()
    wide = isinstance(low, float) and isinstance(high, float) and high >= WIDE_SCALES * low
    return Inputs(kept, str(rows["layout"][0]), rows.height, wide)
