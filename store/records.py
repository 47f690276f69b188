"""Pure record builders: host values -> Arrow tables of one stream.

The training thread produces ``Rows`` (a few rows of one stream that share a step,
epoch and wall time); the writer thread turns a list of them into one Arrow table
with the envelope filled in. No torch here: values are already on the host.
"""

from __future__ import annotations

import array
import itertools
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from store.schema import SCHEMAS, Stream, stream_columns


@dataclass(frozen=True)
class Rows:
    """``n`` rows of one stream sharing step, epoch and wall time.

    ``columns`` maps a stream column to ``n`` values: a sequence, a packed
    ``array.array`` (type code ``d`` or ``q``: the statistics columns, merged by memcpy
    in the writer) or an Arrow array. Columns left out are null.
    ``wall_time`` is seconds since the epoch (``time.time()``).

    ``per_row`` (optional): the envelope row by row instead, for rows of many steps
    handed over together (``collector.steprows``): ``PerRow`` sequences of ``n`` steps,
    epochs and wall times. ``step`` is then the largest of them (the writer's last step).
    """

    stream: Stream
    step: int
    epoch: int | None
    wall_time: float
    columns: Mapping[str, Sequence[Any]]
    per_row: PerRow | None = None

    def __len__(self) -> int:
        for values in self.columns.values():
            return len(values)
        return 0


@dataclass(frozen=True)
class PerRow:
    """The envelope of each row of a ``Rows``: ``steps`` and ``wall_times`` (seconds since
    the epoch) packed (``array.array`` ``q`` and ``d``) or plain sequences, ``epochs``
    a sequence of int or None."""

    steps: Sequence[int]
    epochs: Sequence[int | None]
    wall_times: Sequence[float]


def build_table(
    stream: Stream, batches: Sequence[Rows], *, run_id: str, rank: int, attempt: int, first_seq: int
) -> pa.Table:
    """One Arrow table (the stream's schema) from ``batches``; ``seq`` starts at ``first_seq``.

    Raises ``ValueError`` naming the column when a batch has an unknown column or
    ragged lengths: that is a bug in the producer, and the writer counts it as dropped.
    """
    own = stream_columns(stream)
    known = set(own)
    # Per column, its values in parts: Arrow arrays as they came, runs of packed
    # arrays merged by memcpy, runs of Python values merged into one list (converted by
    # Arrow in one call each).
    parts: dict[str, list[_Part]] = {name: [] for name in own}
    lengths: list[int] = []
    for rows in batches:
        n = len(rows)
        unknown = set(rows.columns) - known
        if unknown:
            raise ValueError(f"stream {stream.value!r} has no column(s) {sorted(unknown)}")
        for name in own:
            values = rows.columns.get(name)
            if values is not None and len(values) != n:
                raise ValueError(
                    f"stream {stream.value!r}: column {name!r} has {len(values)} values, "
                    f"expected {n}"
                )
            column = parts[name]
            last = column[-1] if column else None
            if isinstance(values, pa.Array):
                column.append(values)
            elif isinstance(values, array.array):
                if isinstance(last, array.array) and last.typecode == values.typecode:
                    last.extend(values)
                else:  # a copy: the producer's array is not ours to extend
                    column.append(array.array(values.typecode, values))
            elif isinstance(last, list):
                last.extend([None] * n if values is None else values)
            else:
                column.append([None] * n if values is None else list(values))
        lengths.append(n)
    total = sum(lengths)
    schema = SCHEMAS[stream]
    # The envelope holds one value per batch (or per table): built by Arrow from run
    # ends, not as Python lists of one object per row (half the build time at 60 rows
    # a batch).
    kept = [(b, n) for b, n in zip(batches, lengths, strict=True) if n]  # run ends increase
    envelope = {
        "run_id": pa.repeat(pa.scalar(run_id), total),
        "rank": pa.repeat(pa.scalar(rank), total),
        "attempt": pa.repeat(pa.scalar(attempt), total),
        "seq": pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1), total)), first_seq - 1),
    } | _envelope(kept)
    arrays = [
        envelope[field.name].cast(field.type)
        if field.name in envelope
        else _concat(parts[field.name], field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


_Part: TypeAlias = "list[Any] | array.array[Any] | pa.Array"
# Packed array type codes and the Arrow types that share their memory layout.
_PACKED = {"d": pa.float64(), "q": pa.int64()}


def _concat(parts: list[_Part], type_: pa.DataType) -> pa.Array:
    arrays = []
    for part in parts:
        if isinstance(part, list):
            try:
                arrays.append(pa.array(part, type=type_, from_pandas=False))
            except UnicodeEncodeError:  # a lone surrogate: stored escaped, as documented
                arrays.append(pa.array([_text_or_none(v) for v in part], type=type_))
            continue
        if isinstance(part, array.array):
            if part.typecode not in _PACKED:
                raise ValueError(f"packed values of type code {part.typecode!r} are not supported")
            buffer = pa.py_buffer(part)  # shares the memory; keeps `part` alive
            part = pa.Array.from_buffers(_PACKED[part.typecode], len(part), [None, buffer])
        arrays.append(part if part.type == type_ else part.cast(type_))
    if not arrays:
        return pa.array([], type=type_)
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


def _envelope(kept: list[tuple[Rows, int]]) -> dict[str, pa.Array]:
    """The step, epoch and wall_time columns (wall time in microseconds) of non-empty
    batches: runs of batches that share one envelope each spread by their run ends,
    ``per_row`` batches as they are, in order."""
    parts: dict[str, list[pa.Array]] = {"step": [], "epoch": [], "wall_time": []}
    shared: list[tuple[Rows, int]] = []

    def spread() -> None:
        if not shared:
            return
        ends = pa.array(list(itertools.accumulate(n for _, n in shared)), type=pa.int64())
        parts["step"].append(_per_batch([b.step for b, _ in shared], ends))
        parts["epoch"].append(_per_batch([b.epoch for b, _ in shared], ends))
        micros = [int(b.wall_time * 1_000_000) for b, _ in shared]
        parts["wall_time"].append(_per_batch(micros, ends))
        shared.clear()

    for batch, n in kept:
        per_row = batch.per_row
        if per_row is None:
            shared.append((batch, n))
            continue
        spread()
        for name, values in (("step", per_row.steps), ("epoch", per_row.epochs)):
            if len(values) != n:
                raise ValueError(f"per-row {name}s: {len(values)} values for {n} rows")
            parts[name].append(_int64(values))
        if len(per_row.wall_times) != n:
            raise ValueError(f"per-row wall times: {len(per_row.wall_times)} values for {n} rows")
        seconds = _concat([_part(per_row.wall_times)], pa.float64())
        parts["wall_time"].append(pc.cast(pc.floor(pc.multiply(seconds, 1_000_000)), pa.int64()))
    spread()
    return {
        name: (arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays))
        if arrays
        else pa.array([], type=pa.int64())
        for name, arrays in parts.items()
    }


def _part(values: Sequence[Any]) -> _Part:
    """A column part as ``_concat`` takes it (packed arrays shared, anything else a list)."""
    return values if isinstance(values, array.array | pa.Array) else list(values)


def _int64(values: Sequence[Any]) -> pa.Array:
    return _concat([_part(values)], pa.int64())


def _per_batch(values: list[Any], ends: pa.Array) -> pa.Array:
    """One value per batch, spread over the batch's rows (``ends``: cumulative lengths)."""
    if not values:
        return pa.array([], type=pa.int64())
    encoded = pa.RunEndEncodedArray.from_arrays(ends, pa.array(values, type=pa.int64()))
    return pc.run_end_decode(encoded)


def safe_text(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``"x\\udc80"``).

    ``os.fsdecode`` of a non-UTF-8 path gives such strings. They cannot be encoded as
    UTF-8, so Arrow refuses them, and JSON readers (DuckDB's among them) reject the
    ``\\udc80`` escape ``json.dumps`` writes: every string that reaches the store goes
    through here. Free for ASCII text (the common case).
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _text_or_none(value: Any) -> Any:
    return safe_text(value) if isinstance(value, str) else value


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by "NaN", "Infinity", "-Infinity" and
    strings (keys too) by ``safe_text``.

    Event payloads are strict JSON (readers other than DuckDB reject bare NaN).
    """
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {safe_text(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def plain_json(value: Any, path: str = "config") -> tuple[Any, list[str]]:
    """``value`` as data ``json.dumps`` takes, and the paths of what had to be repr()'d.

    Mappings become dicts with string keys, lists and tuples lists, numbers (numpy's
    too) ``int``/``float`` (NaN/Inf kept: ``json_safe`` spells them at write time),
    ``os.PathLike`` a string. Anything else, a key that is not a plain value, a
    container that contains itself or lies deeper than ``MAX_DEPTH`` become their
    ``repr`` (or ``<unrepresentable T>`` when ``repr`` itself fails) and are listed, so
    the caller can say which ones once.
    """
    converted: list[str] = []
    out = _plain(value, path, converted, set())
    return out, converted


MAX_DEPTH = 64
"""Nesting levels of a config kept as structure; deeper values are stored as text."""


def _plain(value: Any, path: str, converted: list[str], active: set[int]) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except (OverflowError, ValueError):  # e.g. Fraction(10**400)
            converted.append(path)
            return _repr(value)
    if isinstance(value, os.PathLike):
        return _plain(os.fspath(value), path, converted, active)  # bytes paths too
    if isinstance(value, Mapping | list | tuple):
        if id(value) in active or len(active) >= MAX_DEPTH:
            converted.append(path)
            return _repr(value)
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if isinstance(key, str):
                        name = key
                    elif key is None or isinstance(key, bool):
                        name = json.dumps(key)  # what json.dumps itself does with such keys
                    elif isinstance(key, int | float):
                        name = str(key)
                    else:
                        name = _repr(key)
                        converted.append(f"{path}[{name}]")
                    out[name] = _plain(item, f"{path}.{name}", converted, active)
                return out
            return [_plain(v, f"{path}[{i}]", converted, active) for i, v in enumerate(value)]
        finally:
            active.discard(id(value))
    converted.append(path)
    return _repr(value)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a user's __repr__ that fails must not cost the run its config
        return f"<unrepresentable {type(value).__name__}>"
