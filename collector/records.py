"""Pure record builders: host values -> Arrow tables of one stream.

The training thread produces ``Rows`` (a few rows of one stream that share a step,
epoch and wall time); the writer thread turns a list of them into one Arrow table
with the envelope filled in. No torch here: values are already on the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from collector.schema import SCHEMAS, Stream, stream_columns


@dataclass(frozen=True)
class Rows:
    """``n`` rows of one stream sharing step, epoch and wall time.

    ``columns`` maps a stream column to ``n`` values; columns left out are null.
    ``wall_time`` is seconds since the epoch (``time.time()``).
    """

    stream: Stream
    step: int
    epoch: int | None
    wall_time: float
    columns: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        for values in self.columns.values():
            return len(values)
        return 0


def build_table(
    stream: Stream, batches: Sequence[Rows], *, run_id: str, rank: int, attempt: int, first_seq: int
) -> pa.Table:
    """One Arrow table (the stream's schema) from ``batches``; ``seq`` starts at ``first_seq``.

    Raises ``ValueError`` naming the column when a batch has an unknown column or
    ragged lengths: that is a bug in the producer, and the writer counts it as dropped.
    """
    own = stream_columns(stream)
    known = set(own)
    data: dict[str, list[Any]] = {name: [] for name in own}
    steps: list[int] = []
    epochs: list[int | None] = []
    times: list[int] = []
    for rows in batches:
        n = len(rows)
        unknown = set(rows.columns) - known
        if unknown:
            raise ValueError(f"stream {stream.value!r} has no column(s) {sorted(unknown)}")
        for name in own:
            values = rows.columns.get(name)
            if values is None:
                data[name].extend([None] * n)
            elif len(values) != n:
                raise ValueError(
                    f"stream {stream.value!r}: column {name!r} has {len(values)} values, "
                    f"expected {n}"
                )
            else:
                data[name].extend(values)
        steps.extend([rows.step] * n)
        epochs.extend([rows.epoch] * n)
        times.extend([int(rows.wall_time * 1_000_000)] * n)
    total = len(steps)
    envelope = {
        "run_id": [run_id] * total,
        "rank": [rank] * total,
        "attempt": [attempt] * total,
        "seq": list(range(first_seq, first_seq + total)),
        "step": steps,
        "epoch": epochs,
        "wall_time": times,
    }
    schema = SCHEMAS[stream]
    arrays = [
        pa.array({**envelope, **data}[field.name], type=field.type, from_pandas=False)
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by "NaN", "Infinity", "-Infinity".

    Event payloads are strict JSON (readers other than DuckDB reject bare NaN).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
