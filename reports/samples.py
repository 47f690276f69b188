"""Feature maps and filters as stored (uint8 maps with a per-map scale) -> rows a grid chart draws.

The collector stores an image-like tensor of ``shape`` = [maps, H, W] as uint8
bytes, row-major, each map min-max scaled on its own; the real value of a byte is
``lo[i] + byte / 255 * (hi[i] - lo[i])`` (``collector.samples``). The page keeps the
bytes (a pixel is ~4 characters of JSON, its decoded float ~10) and lets the chart
compute the value for its tooltip with ``VALUE_EXPR``, the same formula.

A grid stays small whatever was stored: at most ``MAX_MAPS`` maps, and maps larger
than ``MAX_SIDE`` pixels on a side are reduced by block means (a mean of bytes is
the byte of the mean value, since the scale is linear), and the caption says so.

Pure Python and Polars, no I/O: ``reports.data`` applies it to what it reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from store.errors import TelemetryError

MAX_MAPS = 16
"""Maps drawn per sampled tensor (the collector stores up to 16)."""

MAX_SIDE = 32
"""Pixels per side of a drawn map; larger maps are reduced by block means."""

VALUE_EXPR = "datum.lo + datum.b / 255 * (datum.hi - datum.lo)"
"""The decoding, as a Vega expression over a pixel's byte ``b`` and its map's ``lo``/``hi``."""

WHAT = {"filter": "filters", "feature_map": "feature maps"}
"""The ``what`` values of the samples stream, in the order the page shows them."""


class SampleError(TelemetryError, ValueError):
    """A stored sample that cannot be drawn (the sentence says what is wrong with it)."""


@dataclass(frozen=True)
class Image:
    """One sampled tensor, ready to draw: one row per map with its bytes and scale.

    ``maps``: map (index), lo, hi, w (pixels per drawn row), b (the drawn bytes,
    row-major).
    """

    module: str
    what: str
    step: int
    stored: tuple[int, int, int]
    """maps, H, W as stored."""
    maps: pl.DataFrame
    height: int
    width: int
    factor: int
    """Side of the pixel blocks averaged into one drawn pixel (1: drawn as stored)."""

    @property
    def caption(self) -> str:
        """``16 maps of 28×28`` and what was left out or reduced."""
        n, h, w = self.stored
        text = f"{n} map{'s' if n != 1 else ''} of {h}×{w}"
        if self.maps.height < n:
            text += f", the first {self.maps.height} drawn"
        if self.factor > 1:
            text += (
                f", drawn at {self.height}×{self.width} "
                f"(means of {self.factor}×{self.factor} blocks)"
            )
        return text + "; each map scaled on its own (black: its min, white: its max)."


@dataclass(frozen=True)
class SampleSet:
    """One module's sampled feature maps (or filters): every sampled step, the images drawn."""

    module: str
    what: str
    steps: list[int]
    images: list[Image]
    """The first and the latest sampled step (one image when they are the same)."""
    problems: list[str] = field(default_factory=list)
    """Samples that could not be drawn, and why."""


def image(
    *,
    module: str,
    what: str,
    step: int,
    data: bytes,
    shape: Sequence[int],
    lo: Sequence[float],
    hi: Sequence[float],
    dtype: str | None = "uint8",
    max_maps: int = MAX_MAPS,
    max_side: int = MAX_SIDE,
) -> Image:
    """One stored sample as an ``Image``: its first ``max_maps`` maps, at most ``max_side`` wide.

    Raises ``SampleError`` when the stored sample is inconsistent (dtype, shape,
    byte count or scale), so that one bad row costs its own grid, not the report.
    """
    if dtype not in (None, "uint8"):
        raise SampleError(f"dtype {dtype!r} (only uint8 samples can be drawn)")
    dims = [int(d) for d in shape]
    if len(dims) == 2:
        dims = [1, *dims]
    if len(dims) != 3 or min(dims) <= 0:
        raise SampleError(f"shape {dims} is not [maps, height, width]")
    n, h, w = dims
    if len(data) != n * h * w:
        raise SampleError(f"{len(data)} bytes for shape {dims} ({n * h * w} expected)")
    if len(lo) != n or len(hi) != n:
        raise SampleError(f"{len(lo)} lo and {len(hi)} hi values for {n} maps")
    shown = min(n, max_maps)
    scales = [*lo[:shown], *hi[:shown]]
    if not all(v is not None and math.isfinite(v) for v in scales):
        raise SampleError("a map's lo/hi scale is missing or not finite")
    pixels = h * w
    factor = max(1, math.ceil(max(h, w) / max_side))
    if factor == 1:
        rows = [list(data[i * pixels : (i + 1) * pixels]) for i in range(shown)]
    else:
        rows = _block_means(data[: shown * pixels], h=h, w=w, factor=factor)
    maps = pl.DataFrame(
        {
            "map": list(range(shown)),
            "lo": [float(v) for v in lo[:shown]],
            "hi": [float(v) for v in hi[:shown]],
            "w": [math.ceil(w / factor)] * shown,
            "b": rows,
        },
        schema={
            "map": pl.Int64,
            "lo": pl.Float64,
            "hi": pl.Float64,
            "w": pl.Int64,
            "b": pl.List(pl.Int64),
        },
    )
    return Image(
        module, what, step, (n, h, w), maps, math.ceil(h / factor), math.ceil(w / factor), factor
    )


def drawn_pixels(
    shape: Sequence[int], *, max_maps: int = MAX_MAPS, max_side: int = MAX_SIDE
) -> int:
    """Pixels ``image`` draws for a stored ``shape`` ([maps, H, W] or [H, W]); 0 if malformed."""
    dims = [int(d) for d in shape]
    if len(dims) == 2:
        dims = [1, *dims]
    if len(dims) != 3 or min(dims) <= 0:
        return 0
    n, h, w = dims
    factor = max(1, math.ceil(max(h, w) / max_side))
    return min(n, max_maps) * math.ceil(h / factor) * math.ceil(w / factor)


def fit(groups: Sequence[dict[str, Any]], pixels: int) -> tuple[list[dict[str, Any]], int]:
    """The sampled tensors of ``groups`` (in order) whose grids fit in ``pixels``, and the
    maps each may draw: ``MAX_MAPS``, or fewer when even the first does not fit at full size.

    A group has ``shape`` (as stored) and ``steps``; its grids are its first and latest step.
    """
    drawn: list[dict[str, Any]] = []
    left, max_maps = pixels, MAX_MAPS
    for g in groups:
        shape, images = g["shape"] or [], min(2, len(g["steps"]))
        cost = images * drawn_pixels(shape)
        if cost > left and not drawn:
            max_maps = max(1, left // max(1, images * drawn_pixels(shape, max_maps=1)))
            cost = images * drawn_pixels(shape, max_maps=max_maps)
        if cost > left:
            break
        drawn.append(g)
        left -= cost
    return drawn, max_maps


def sets(
    groups: Sequence[dict[str, Any]], rows: Iterable[dict[str, Any]], *, max_maps: int = MAX_MAPS
) -> list[SampleSet]:
    """One ``SampleSet`` per group (module, what, steps) from the stored ``rows`` of its grids.

    A row that cannot be drawn costs its own grid, named in the set's ``problems``.
    """
    wanted = {(g["module"], g["what"]) for g in groups}
    images: dict[tuple[str, str], list[Image]] = {}
    problems: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        key = (row["module"], row["what"])
        if key not in wanted:
            continue
        try:
            drawn = image(
                module=row["module"],
                what=row["what"],
                step=row["step"],
                data=row["data"] or b"",
                shape=row["shape"] or [],
                lo=row["lo"] or [],
                hi=row["hi"] or [],
                dtype=row["dtype"],
                max_maps=max_maps,
            )
        except SampleError as e:
            problems.setdefault(key, []).append(f"step {row['step']}: {e}")
            continue
        images.setdefault(key, []).append(drawn)
    return [
        SampleSet(
            g["module"],
            g["what"],
            [int(s) for s in g["steps"]],
            images.get((g["module"], g["what"]), []),
            problems.get((g["module"], g["what"]), []),
        )
        for g in groups
    ]


def _block_means(data: bytes, *, h: int, w: int, factor: int) -> list[list[int]]:
    """Per map, the rounded mean byte of each ``factor`` x ``factor`` block, row-major."""
    bh, bw = math.ceil(h / factor), math.ceil(w / factor)
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    block = (i // (h * w) * bh + i % (h * w) // w // factor) * bw + i % w // factor
    means = (
        pl.DataFrame({"b": pl.Series(list(data), dtype=pl.Int64)})
        .group_by(block.alias("block"))
        .agg(pl.col("b").mean().round().cast(pl.Int64))
        .sort("block")["b"]
        .to_list()
    )
    size = bh * bw
    return [means[k : k + size] for k in range(0, len(means), size)]
