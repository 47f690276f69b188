"""What ``Collector.log()`` is given: metric mappings checked and turned into rows.

``{"loss/val": x}`` means name ``loss``, split ``val`` (unless ``split=`` is given).
A value is a real number or a one-element tensor. Tensor values on the CPU are read
at once (a memory read); values on an accelerator stay there, one float64 tensor per
call, and are moved to the host in batches (``LogRows.keep`` and ``read``): no host
synchronisation per step. The rows go to the ``scalars`` stream (with the step's own
rows, ``collector.steprows``), and a training loss
that misbehaves asks the overhead budget for dense steps (``watch_loss``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping

import torch

from collector.arguments import check_optional_int, shown
from store.errors import ConfigError
from store.records import safe_text

log = logging.getLogger(__name__)

LOG_BATCH = 16
"""Calls of ``log()`` whose accelerator values are read in one transfer."""

MAX_LABELS = 4096
"""Metric keys whose parsed (name, split) are kept for the next calls."""


@dataclasses.dataclass
class PendingLog:
    """One ``log()`` call's rows; ``values[i]`` for ``i`` in ``indices`` still on the device."""

    step: int
    epoch: int | None
    wall_time: float
    names: list[str]
    splits: list[str | None]
    values: list[float]
    indices: list[int] = dataclasses.field(default_factory=list)
    device_values: torch.Tensor | None = None


Parsed = tuple[list[str], list[str | None], list[float], list[tuple[int, torch.Tensor]]]
"""Names, splits, values (NaN where still on a device) and (index, device value)."""


WatchLoss = Callable[[list[str], list[str | None], list[float]], None]
OnValues = Callable[[list[str], list[str | None], list[float], int], None]
LoggedEntry = tuple[int, int | None, float, list[str], list[str | None], list[float]]
"""One call's rows on the host: step, epoch, wall time, names, splits, values."""

PutRows = Callable[[LoggedEntry], None]
"""Where a call's rows go (``collector.steprows.StepRows.logged``)."""


class LogRows:
    """The rows of one run's ``log()`` calls; ``pending``: those waiting on a device.

    ``watch_loss`` (None: no budget to tell) sees every call's values once on the host.
    """

    def __init__(self, run_id: str, put_rows: PutRows, watch_loss: WatchLoss | None) -> None:
        self.run_id = run_id
        self.pending: list[PendingLog] = []
        self._put_rows = put_rows
        self._watch_loss = watch_loss
        self._unicode_warned = False
        self._labels: dict[tuple[str, str | None], tuple[str, str | None]] = {}
        self.on_values: OnValues | None = None
        """Sees every call's values on the host once its rows are queued (the NaN guard
        and early stopping: ``collector.stopping``); None when neither is on."""

    def check(self, metrics: object, *, split: object, epoch: object, step: object) -> str | None:
        """``ConfigError`` for the first argument of ``log()`` it cannot take (the
        values are checked by ``parse``); the split as stored."""
        if type(metrics) is not dict and not isinstance(metrics, Mapping):
            raise ConfigError(
                f"log() takes a mapping of name -> value, got {type(metrics).__name__}"
            )
        if epoch is not None:
            check_optional_int("epoch", epoch)
        if step is not None:
            check_optional_int("step", step)
        if split is None:
            return None
        if not isinstance(split, str) or not split:
            raise ConfigError(f"split must be a non-empty string or None, got {shown(split)}")
        if not split.isascii():
            split = self.valid_unicode(split)
        return split

    def valid_unicode(self, text: str) -> str:
        """``text`` as stored: lone surrogates escaped (``records.safe_text``), said once."""
        stored = safe_text(text)
        if stored != text and not self._unicode_warned:
            self._unicode_warned = True
            log.warning(
                "run %s: metric name %s is not valid Unicode (lone surrogates); stored with "
                "them escaped as %r (said once per run)",
                self.run_id,
                ascii(text),
                stored,
            )
        return stored

    def parse(self, metrics: Mapping[str, float | int | torch.Tensor], split: str | None) -> Parsed:
        """The rows of one call; ``ConfigError`` naming the first metric it cannot take."""
        names: list[str] = []
        splits: list[str | None] = []
        tensors: list[tuple[int, torch.Tensor]] = []
        values: list[float] = []
        labels = self._labels
        for key, value in metrics.items():
            label = labels.get((key, split))
            if label is None:
                label = self._label(key, split)
            names.append(label[0])
            splits.append(label[1])
            if type(value) is float:
                values.append(value)
            elif isinstance(value, torch.Tensor):
                self._tensor(key, value, values, tensors)
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                try:
                    values.append(float(value))
                except OverflowError as e:  # 10**400: no float64 holds it
                    raise ConfigError(
                        f"metric {key!r} is a {type(value).__name__} beyond the float64 range "
                        "(about 1.8e308); log a float (math.inf if that is what it means)"
                    ) from e
            else:
                raise ConfigError(
                    f"metric {key!r} has a value of type {type(value).__name__}; "
                    "expected a real number or a one-element tensor"
                )
        return names, splits, values, tensors

    def _label(self, key: object, split: str | None) -> tuple[str, str | None]:
        """The (name, split) of a metric key, checked, cached for the next calls."""
        if not isinstance(key, str) or not key:
            raise ConfigError(f"metric names must be non-empty strings, got {shown(key)}")
        name, row_split = key, split
        if not key.isascii():
            name = self.valid_unicode(key)
        if split is None and "/" in name:
            name, _, row_split = name.rpartition("/")
            if not name or not row_split:
                raise ConfigError(f"metric {key!r}: expected 'name/split', e.g. 'loss/val'")
        label = (name, row_split)
        if len(self._labels) < MAX_LABELS:
            self._labels[(key, split)] = label
        return label

    @staticmethod
    def _tensor(
        key: str, value: torch.Tensor, values: list[float], tensors: list[tuple[int, torch.Tensor]]
    ) -> None:
        if value.numel() != 1:
            raise ConfigError(
                f"metric {key!r} is a tensor of shape {tuple(value.shape)}; "
                "log() takes one number per name (reduce it first, e.g. .mean())"
            )
        if value.is_complex() or value.dtype is torch.bool:
            raise ConfigError(
                f"metric {key!r} is a {value.dtype} tensor; log() takes real numbers "
                "(log .real and .imag, or .abs(), of a complex value; .float() of a flag)"
            )
        if _kept_on_device(value):  # read in batches
            tensors.append((len(values), value.detach().reshape(())))
            values.append(math.nan)
        else:
            # A CPU tensor: item() reads memory, no device sync (and, unlike float(), no
            # warning for a value that requires grad).
            values.append(float(value.item()))

    def keep(self, entry: PendingLog, tensors: list[tuple[int, torch.Tensor]]) -> bool:
        """Keep ``entry`` until its device values are read; True when a batch is full."""
        # One float64 tensor per call on the (first) accelerator; read in batches.
        device = tensors[0][1].device
        entry.indices = [i for i, _ in tensors]
        entry.device_values = torch.stack([t.to(device, torch.float64) for _, t in tensors])
        self.pending.append(entry)
        return len(self.pending) >= LOG_BATCH

    def record(self, entry: PendingLog) -> None:
        """Queue the rows of a call whose values were read from a device."""
        self.record_values(
            (entry.step, entry.epoch, entry.wall_time, entry.names, entry.splits, entry.values)
        )

    def record_values(self, entry: LoggedEntry) -> None:
        """Queue the rows of a call whose values are all on the host."""
        step, _, _, names, splits, values = entry
        if self._watch_loss is not None:
            self._watch_loss(names, splits, values)
        self._put_rows(entry)
        if self.on_values is not None:
            self.on_values(names, splits, values, step)

    def read(self) -> float:
        """Move the kept values to the host (one transfer per device) and record their
        rows; the seconds spent waiting for the device (training, not the collector)."""
        pending, self.pending = self.pending, []
        if not pending:
            return 0.0
        by_device: dict[torch.device, list[tuple[PendingLog, torch.Tensor]]] = {}
        for entry in pending:
            kept = entry.device_values
            assert kept is not None  # only entries with device values are pending
            by_device.setdefault(kept.device, []).append((entry, kept))
        waited = 0.0
        for pairs in by_device.values():
            stacked = torch.cat([kept for _, kept in pairs])
            before = time.perf_counter()
            host = stacked.cpu().tolist()  # waits for the kernels queued so far
            waited += time.perf_counter() - before
            values = iter(host)
            for entry, _ in pairs:
                for i in entry.indices:
                    entry.values[i] = next(values)
        for entry in pending:
            self.record(entry)
        return waited


def _kept_on_device(t: torch.Tensor) -> bool:
    """Whether a logged value waits on its device (reading it would synchronise)."""
    return t.device.type != "cpu"
