"""What ``Collector.log_predictions()`` is given, reduced to the ``predictions`` stream.

Classification (integer or boolean targets: class ids): the outputs are class ids of
the targets' shape, or scores (logits, probabilities) with one more dimension, the
classes, at dimension 1 (``cross_entropy``'s ``[N, C, ...]``) or last (``[N, T, C]``);
the argmax is taken on the outputs' device. The result is confusion cells: (true
class, predicted class, count). Targets below 0 (an ``ignore_index`` such as -100) are
left out, as are targets at or beyond the number of score columns (a 1-based label:
the loss would have refused it). With at most ``DENSE_CLASSES`` score columns the cells
are counted on the device (a ``[C * C]`` tensor whatever the batch: per-pixel
segmentation stays small; the calls of one matrix add into one); with class ids, or
more classes, the ids themselves are kept and counted on the host.

Regression (floating-point targets): outputs with as many values as the targets,
``[N, D]`` per example (a ``[N, 1]`` output against ``[N]`` targets is one column, not
a broadcast). Per column, the first ``MAX_OUTPUTS``: the count, and for the targets,
the outputs and the errors (output - target) their mean and centred sum of squares,
the mean absolute error and the largest; calls of one step merge exactly (Chan et
al.'s update, here and in the ``residuals`` view, which turns them into std, RMSE, MAE,
R^2), with no digits lost to a large offset (targets around 1e8 with a std of 1).

Values on an accelerator stay there (no host synchronisation per call): a call's
reduction is kept as one tensor and read in batches, as ``log()``'s values are
(``LOG_BATCH`` calls, a sampled step, ``flush()``, ``close()``); on the CPU the calls are
kept until a call comes for another step (or ``HOST_BATCH`` calls). The calls of one
split at one step read together are summed into one set of rows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from collector.arguments import shown
from collector.logged import LOG_BATCH
from store.errors import ConfigError
from store.records import Rows
from store.schema import Stream
from store.writer import Writer

DENSE_CLASSES = 256
"""Score columns up to which a call's confusion cells are counted on the device (a
``[C * C]`` int64 tensor: 0.5 MB at 256; the calls of one split and step add into one)."""

HOST_BATCH = 256
"""Calls on the CPU summed into one set of rows at most (they wait for nothing)."""

MAX_OUTPUTS = 64
"""Regression output columns recorded per call (the first ones)."""

_REGRESSION_COLUMNS = (
    "target_mean",
    "target_m2",
    "output_mean",
    "output_m2",
    "error_mean",
    "error_m2",
    "error_abs_mean",
    "error_abs_max",
)
"""The rows of a regression call's ``[8, D]`` tensor, in order (the stream's columns)."""


@dataclasses.dataclass
class PendingPredictions:
    """One call reduced on its device: ``kind`` says what ``kept`` holds.

    ``cells``: ``[C * C + 1]`` counts (true * C + predicted; the last: ignored targets);
    ``ids``: ``[2, N]`` true and predicted class ids; ``sums``: ``[8, D]`` (the
    ``_REGRESSION_COLUMNS`` rows) of ``count`` examples.
    """

    split: str
    step: int
    epoch: int | None
    wall_time: float
    kind: str
    kept: torch.Tensor
    classes: int = 0
    count: int = 0


def reduce(targets: Any, outputs: Any, *, split: str) -> tuple[str, torch.Tensor, int, int]:
    """One call's (kind, kept tensor, classes, count); ``ConfigError`` naming what does not fit."""
    t = _tensor("targets", targets).detach()
    o = _tensor("outputs", outputs).detach()
    if t.device != o.device:
        raise ConfigError(
            f"log_predictions(split={split!r}): targets are on {t.device}, outputs on "
            f"{o.device}; pass both on one device"
        )
    if t.is_complex() or o.is_complex():
        raise ConfigError("log_predictions() takes real targets and outputs, not complex ones")
    if t.dtype is torch.bool or not t.is_floating_point():
        return _classification(t.long(), o, split)
    if t.numel() == 0 and o.numel() == 0:
        return "sums", torch.zeros(8, 0, dtype=torch.float64), 0, 0  # nothing to record
    return _regression(t, o, split)


def _tensor(what: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(
            f"log_predictions() {what} must be a tensor or an array of numbers, got {shown(value)}"
        ) from e


def _classification(
    t: torch.Tensor, o: torch.Tensor, split: str
) -> tuple[str, torch.Tensor, int, int]:
    if t.dim() == 2 and t.shape[1] == 1 and o.dim() == 2 and o.shape[0] == t.shape[0]:
        t = t.reshape(-1)  # [N, 1] class ids against [N, C] scores
    if o.dtype is torch.bool or not o.is_floating_point():
        if o.numel() != t.numel():
            raise ConfigError(
                f"log_predictions(split={split!r}): predicted class ids of shape "
                f"{tuple(o.shape)} do not match targets of shape {tuple(t.shape)}"
            )
        ids = torch.stack([t.reshape(-1), o.reshape(-1).long()])
        return "ids", ids, 0, ids.shape[1]
    if o.dim() == t.dim() + 1 and o.shape[:-1] == t.shape:
        dim = -1  # [N, T, C] scores against [N, T] targets
    elif o.dim() == t.dim() + 1 and o.shape[0] == t.shape[0] and o.shape[2:] == t.shape[1:]:
        dim = 1  # cross_entropy's [N, C, ...]
    elif o.numel() == t.numel():
        raise ConfigError(
            f"log_predictions(split={split!r}): integer targets (class ids) with "
            f"floating-point outputs of the same shape {tuple(o.shape)}: pass class ids "
            "(for one binary logit: (outputs > 0).long()) or one score per class; for "
            "regression pass floating-point targets"
        )
    else:
        raise ConfigError(
            f"log_predictions(split={split!r}): outputs of shape {tuple(o.shape)} do not "
            f"fit targets of shape {tuple(t.shape)}: expected class ids of the targets' "
            "shape, or scores with one more dimension (the classes) at dimension 1 or last"
        )
    classes = o.shape[dim]
    if classes == 1:
        raise ConfigError(
            f"log_predictions(split={split!r}): one score per example (a binary logit of "
            f"shape {tuple(o.shape)}) has no argmax to take: pass class ids, e.g. "
            "(outputs > 0).long() for a logit, (outputs > 0.5).long() for a probability"
        )
    predicted = o.argmax(dim)
    if classes > DENSE_CLASSES:
        true = t.reshape(-1)
        true = torch.where(true < classes, true, torch.full_like(true, -1))  # left out
        ids = torch.stack([true, predicted.reshape(-1)])
        return "ids", ids, classes, ids.shape[1]
    true = t.reshape(-1)
    cell = torch.where(
        (true >= 0) & (true < classes),
        true * classes + predicted.reshape(-1),
        torch.full_like(true, classes * classes),  # out of range: counted apart
    )
    counts = torch.zeros(classes * classes + 1, dtype=torch.int64, device=o.device)
    counts.index_add_(0, cell, torch.ones_like(cell))  # no host synchronisation
    return "cells", counts, classes, true.numel()


def _regression(t: torch.Tensor, o: torch.Tensor, split: str) -> tuple[str, torch.Tensor, int, int]:
    if o.numel() != t.numel():
        raise ConfigError(
            f"log_predictions(split={split!r}): floating-point targets (regression) of "
            f"shape {tuple(t.shape)} and outputs of shape {tuple(o.shape)} hold "
            f"{t.numel()} and {o.numel()} values; they must match (for classification "
            "pass integer class ids as targets)"
        )
    n = t.shape[0] if t.dim() else 1
    t = t.reshape(n, -1)[:, :MAX_OUTPUTS].double()
    o = o.reshape(n, -1)[:, :MAX_OUTPUTS].double()
    e = o - t
    t_mean, o_mean, e_mean = t.mean(0), o.mean(0), e.mean(0)
    sums = torch.stack(
        [
            t_mean,
            ((t - t_mean) ** 2).sum(0),  # centred: no digits lost to a large mean
            o_mean,
            ((o - o_mean) ** 2).sum(0),
            e_mean,
            ((e - e_mean) ** 2).sum(0),
            e.abs().mean(0),
            e.abs().amax(0),
        ]
    )  # [8, D]: one transfer
    return "sums", sums, 0, n


class PredictionRows:
    """The ``predictions`` rows of one run's ``log_predictions()`` calls."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self.pending: list[PendingPredictions] = []

    def add(self, entry: PendingPredictions) -> bool:
        """Keep a call until its step is over (on the CPU) or a batch is read (on a
        device); True when a batch is full."""
        last = self.pending[-1] if self.pending else None
        if last is not None and last.step != entry.step and last.kept.device.type == "cpu":
            self.read()  # the previous step's calls are all in; reading waits for nothing
            last = None
        if last is not None and _same_matrix(last, entry):
            last.kept += entry.kept  # one [C * C] tensor per split and step (asynchronous)
            last.count += entry.count
            last.wall_time = entry.wall_time
            return False
        self.pending.append(entry)
        limit = LOG_BATCH if entry.kept.device.type != "cpu" else HOST_BATCH
        return len(self.pending) >= limit

    def read(self) -> float:
        """Move the kept reductions to the host and record their rows; the seconds
        spent waiting for the device."""
        pending, self.pending = self.pending, []
        if not pending:
            return 0.0
        before = time.perf_counter()
        host = [entry.kept.cpu().numpy() for entry in pending]  # the first waits; then copies
        waited = time.perf_counter() - before
        self._record(pending, host)
        return waited

    def _record(self, entries: Sequence[PendingPredictions], host: Sequence[np.ndarray]) -> None:
        groups: dict[tuple[str, int, int | None], list[tuple[PendingPredictions, np.ndarray]]] = {}
        for entry, values in zip(entries, host, strict=True):
            groups.setdefault((entry.split, entry.step, entry.epoch), []).append((entry, values))
        for (split, step, epoch), calls in groups.items():
            columns = _rows(split, calls)
            if columns["split"]:
                wall_time = max(entry.wall_time for entry, _ in calls)
                self._writer.put(Rows(Stream.PREDICTIONS, step, epoch, wall_time, columns))


def _same_matrix(a: PendingPredictions, b: PendingPredictions) -> bool:
    """Two calls whose device-counted cells add up: one split, step, epoch and class count."""
    return (
        a.kind == b.kind == "cells"
        and (a.split, a.step, a.epoch, a.classes) == (b.split, b.step, b.epoch, b.classes)
        and a.kept.device == b.kept.device
    )


def _rows(split: str, calls: list[tuple[PendingPredictions, np.ndarray]]) -> dict[str, list[Any]]:
    """The rows of one split at one step: confusion cells, then regression columns."""
    cells: dict[tuple[int, int], int] = {}
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for entry, values in calls:
        if entry.kind == "cells":
            c = entry.classes
            for cell in np.flatnonzero(values[: c * c]):
                key = divmod(int(cell), c)
                cells[key] = cells.get(key, 0) + int(values[cell])
        elif entry.kind == "ids":
            true, predicted = values
            kept = true >= 0
            pairs, n = np.unique(
                np.stack([true[kept], predicted[kept]]), axis=1, return_counts=True
            )
            for (a, b), k in zip(pairs.T.tolist(), n.tolist(), strict=True):
                cells[(a, b)] = cells.get((a, b), 0) + k
        else:
            for index in range(values.shape[1]):
                column = values[:, index]
                if index in sums:
                    sums[index] = _merged(sums[index], counts[index], column, entry.count)
                else:
                    sums[index] = column.copy()
                counts[index] = counts.get(index, 0) + entry.count
    columns: dict[str, list[Any]] = {
        "split": [],
        "true_class": [],
        "predicted_class": [],
        "count": [],
        "index": [],
        **{name: [] for name in _REGRESSION_COLUMNS},
    }
    for (a, b), k in sorted(cells.items()):
        columns["true_class"].append(a)
        columns["predicted_class"].append(b)
        columns["count"].append(k)
        columns["index"].append(None)
    for index in sorted(sums):
        columns["true_class"].append(None)
        columns["predicted_class"].append(None)
        columns["count"].append(counts[index])
        columns["index"].append(index)
    for name_i, name in enumerate(_REGRESSION_COLUMNS):
        columns[name] = [None] * len(cells) + [float(c[name_i]) for _, c in sorted(sums.items())]
    columns["split"] = [split] * len(columns["count"])
    return columns


def _merged(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int) -> np.ndarray:
    """Two calls' ``_REGRESSION_COLUMNS`` of one output column as one (Chan et al.'s
    pairwise update: means weighted, centred sums of squares plus the means' spread)."""
    n = n_a + n_b
    out = np.empty_like(a)
    for mean, m2 in ((0, 1), (2, 3), (4, 5)):
        delta = b[mean] - a[mean]
        out[mean] = a[mean] + delta * n_b / n
        out[m2] = a[m2] + b[m2] + delta * delta * n_a * n_b / n
    out[6] = (a[6] * n_a + b[6] * n_b) / n
    out[7] = np.maximum(a[7], b[7])  # NaN stays NaN
    return out
