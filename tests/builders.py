"""Synthetic stores for tests: write exactly the rows a test describes, synchronously.

Uses the collector's own record builder and segment writer (no torch, no thread), so
a synthetic store is byte-for-byte what a real run would publish.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from store.layout import SegmentName, stream_dir
from store.records import Rows, build_table
from store.schema import Stream
from store.segments import write_segment

_ACTIVATION_DEFAULTS: dict[str, float | None] = {
    "numel": 1024,
    "mean": 0.0,
    "std": 1.0,
    "min": -3.0,
    "max": 3.0,
    "zero_frac": 0.0,
    "saturated_frac": None,
    "nonfinite": 0,
    "dead_frac": None,
}


def publish(
    root: Path,
    run_id: str,
    stream: Stream,
    batches: Sequence[Rows],
    *,
    segment: int,
    first_seq: int,
    rank: int = 0,
    attempt: int = 0,
) -> int:
    """Publish ``batches`` (sorted by step) as segment number ``segment``; returns the rows."""
    table = build_table(
        stream,
        sorted(batches, key=lambda r: r.step),
        run_id=run_id,
        rank=rank,
        attempt=attempt,
        first_seq=first_seq,
    )
    name = SegmentName(rank, attempt, segment, segment)
    write_segment(table, stream_dir(root, run_id, stream), name.filename())
    return int(table.num_rows)


class RunBuilder:
    """Collects rows of one run; ``write()`` publishes one segment per stream.

    Example::

        run = RunBuilder(tmp_path, "r1", config={"lr": 0.1})
        run.scalars("loss", "train", [2.0, 1.5, 1.0])
        run.finish().write()
    """

    def __init__(
        self,
        root: Path,
        run_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        start: float | None = None,
        attempt: int = 0,
        rank: int = 0,
        started: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.attempt = attempt
        self.rank = rank
        self.t0 = time.time() - 3600 if start is None else start
        self._rows: dict[Stream, list[Rows]] = {}
        self._segment = 0
        self._seq = 0
        self._last_step = 0
        payload = {"name": name or run_id, "config": dict(config or {}), **(started or {})}
        self.event("run_started", payload, step=0)  # started: more run_started fields

    def _add(
        self, stream: Stream, step: int, epoch: int | None, columns: dict[str, list[Any]]
    ) -> None:
        self._last_step = max(self._last_step, step)
        rows = Rows(stream, step=step, epoch=epoch, wall_time=self.t0 + step, columns=columns)
        self._rows.setdefault(stream, []).append(rows)

    def event(
        self, kind: str, payload: Mapping[str, Any] | None = None, *, step: int | None = None
    ) -> RunBuilder:
        s = self._last_step if step is None else step
        self._add(Stream.EVENTS, s, None, {"kind": [kind], "payload": [json.dumps(payload or {})]})
        return self

    def scalars(
        self,
        name: str,
        split: str | None,
        values: Sequence[float],
        *,
        steps: Sequence[int] | None = None,
        epochs: Sequence[int | None] | None = None,
    ) -> RunBuilder:
        steps = list(steps) if steps is not None else list(range(1, len(values) + 1))
        epochs = list(epochs) if epochs is not None else [None] * len(values)
        for v, s, e in zip(values, steps, epochs, strict=True):
            self._add(Stream.SCALARS, s, e, {"name": [name], "split": [split], "value": [float(v)]})
        return self

    def tensors(
        self,
        param: str,
        kind: str,
        norms: Sequence[float],
        *,
        steps: Sequence[int] | None = None,
        epochs: Sequence[int | None] | None = None,
        numel: int = 100,
        nonfinite: Sequence[int] | None = None,
        **columns: Sequence[float],
    ) -> RunBuilder:
        """One row per step; stats not given are derived loosely from the norm."""
        steps = list(steps) if steps is not None else list(range(1, len(norms) + 1))
        epochs = list(epochs) if epochs is not None else [None] * len(norms)
        bad = list(nonfinite) if nonfinite is not None else [0] * len(norms)
        for i, (n, s) in enumerate(zip(norms, steps, strict=True)):
            row: dict[str, list[Any]] = {
                "param": [param],
                "kind": [kind],
                "numel": [numel],
                "norm": [float(n)],
                "mean": [0.0],
                "std": [float(n) / numel**0.5],
                "min": [-float(n)],
                "max": [float(n)],
                "abs_max": [float(n)],
                "zero_frac": [0.0],
                "nonfinite": [bad[i]],
            }
            for key, values in columns.items():
                row[key] = [values[i]]
            self._add(Stream.TENSORS, s, epochs[i], row)
        return self

    def activations(
        self,
        module: str,
        module_type: str,
        steps: Sequence[int],
        **columns: float | None | Sequence[float | None],
    ) -> RunBuilder:
        """One ``activations`` row of ``module`` per step in ``steps``.

        A column is one value for every step or a sequence with one per step; columns
        not given take ``_ACTIVATION_DEFAULTS`` (a unit-variance output, no saturation
        or dead-unit statistics). Add a run's modules in forward order: within a step,
        rows keep the order they were added in, so ``seq`` follows depth as it does in
        a real run.
        """
        steps = list(steps)
        unknown = set(columns) - set(_ACTIVATION_DEFAULTS)
        if unknown:
            raise TypeError(f"activations() got unknown column(s) {sorted(unknown)}")
        values = {**_ACTIVATION_DEFAULTS, **columns}
        for i, s in enumerate(steps):
            row: dict[str, list[Any]] = {"module": [module], "module_type": [module_type]}
            for key, value in values.items():
                v = value[i] if isinstance(value, Sequence) else value
                row[key] = [v]
            self._add(Stream.ACTIVATIONS, s, None, row)
        return self

    def system(
        self,
        step_times: Sequence[float | None],
        data_times: Sequence[float | None],
        *,
        steps: Sequence[int] | None = None,
        **columns: Sequence[float | int | None],
    ) -> RunBuilder:
        """One ``system`` row per step (steps 1, 2, ... unless given); compute is the rest.

        A None time is a step that could not be timed. ``columns``: the other ``system``
        columns per step (``grad_norm=[...]``, ``clip_ratio=[...]``); the rest are null.
        """
        steps = list(steps) if steps is not None else list(range(1, len(step_times) + 1))
        extra = {k: list(v) for k, v in columns.items()}
        for i, (s, t, d) in enumerate(zip(steps, step_times, data_times, strict=True)):
            compute = None if t is None or d is None else t - d
            cols = {"step_time_s": [t], "data_time_s": [d], "compute_time_s": [compute]}
            cols |= {k: [v[i]] for k, v in extra.items()}
            self._add(Stream.SYSTEM, s, None, cols)
        return self

    def confusion(
        self,
        split: str,
        step: int,
        cells: Mapping[tuple[int, int], int],
        *,
        epoch: int | None = None,
    ) -> RunBuilder:
        """The ``predictions`` rows of one confusion matrix: (true, predicted) -> count."""
        pairs = sorted(cells.items())
        self._add(
            Stream.PREDICTIONS,
            step,
            epoch,
            {
                "split": [split] * len(pairs),
                "true_class": [a for (a, _), _ in pairs],
                "predicted_class": [b for (_, b), _ in pairs],
                "count": [n for _, n in pairs],
            },
        )
        return self

    def residuals(
        self, split: str, step: int, targets: Sequence[float], outputs: Sequence[float]
    ) -> RunBuilder:
        """The ``predictions`` row of one regression output column (index 0)."""
        t = [float(v) for v in targets]
        o = [float(v) for v in outputs]
        e = [b - a for a, b in zip(t, o, strict=True)]

        def moments(values: list[float]) -> tuple[float, float]:
            mean = sum(values) / len(values)
            return mean, sum((v - mean) ** 2 for v in values)

        (tm, t2), (om, o2), (em, e2) = moments(t), moments(o), moments(e)
        sums = {
            "target_mean": tm,
            "target_m2": t2,
            "output_mean": om,
            "output_m2": o2,
            "error_mean": em,
            "error_m2": e2,
            "error_abs_mean": sum(abs(v) for v in e) / len(e),
            "error_abs_max": max(abs(v) for v in e),
        }
        row = {"split": [split], "count": [len(t)], "index": [0]}
        self._add(Stream.PREDICTIONS, step, None, row | {k: [v] for k, v in sums.items()})
        return self

    def finish(self) -> RunBuilder:
        return self.event("run_finished", {"steps": self._last_step})

    def fail(self, type_: str = "RuntimeError", message: str = "boom") -> RunBuilder:
        return self.event("run_failed", {"type": type_, "message": message})

    def write(self) -> RunBuilder:
        """Publish everything added since the last write, one segment per stream."""
        for stream, batches in self._rows.items():
            self._seq += publish(
                self.root,
                self.run_id,
                stream,
                batches,
                segment=self._segment,
                first_seq=self._seq,
                rank=self.rank,
                attempt=self.attempt,
            )
            self._segment += 1
        self._rows = {}
        return self
