"""Feature maps and filters as small images, on sampled steps, within a byte budget.

Every ``every`` steps (the first training forward of the step): for each
``nn.Conv2d`` leaf, the output maps of the first example of the batch (at most
``max_maps`` channels), and after the step the first conv layer's filters (the
first ``max_maps`` kernels, flattened over output and input channels in that
order). Each map is min-max scaled on its own to uint8; its ``lo`` and ``hi`` are
stored so that ``value = lo + byte / 255 * (hi - lo)``. NaN/Inf pixels are stored
as 0 (their map's ``lo``/``hi`` ignore them). Once ``budget_bytes`` of pixel data
have been recorded the run records no more samples (one log line says so).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from collector.activations import first_float_tensor

log = logging.getLogger(__name__)


def quantize(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``maps`` [k, ...] -> (uint8 [k, ...], lo [k], hi [k]), each map scaled on its own."""
    flat = maps.detach().reshape(maps.shape[0], -1).float()
    finite = torch.isfinite(flat)
    lo = torch.where(finite, flat, torch.inf).amin(dim=1)
    hi = torch.where(finite, flat, -torch.inf).amax(dim=1)
    lo = torch.where(torch.isfinite(lo), lo, 0.0)
    hi = torch.where(torch.isfinite(hi), hi, 0.0)
    span = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = ((flat - lo[:, None]) / span[:, None] * 255).round().clamp(0, 255)
    q = torch.where(finite, scaled, 0.0).to(torch.uint8).reshape(maps.shape)
    return q, lo, hi


class SampleWatcher:
    def __init__(
        self,
        convs: list[tuple[str, nn.Module]],
        *,
        every: int,
        budget_bytes: int,
        max_maps: int = 16,
    ) -> None:
        self.convs = [(n, m) for n, m in convs if isinstance(m, nn.Conv2d)]
        self._conv_names = {n for n, _ in self.convs}
        self.every = every
        self.budget_bytes = budget_bytes
        self.max_maps = max_maps
        self.bytes_used = 0
        self._exhausted = False
        self._forward_step = -1
        self._sampling = False
        self._queued: list[tuple[str, str, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def sampling(self) -> bool:
        return self._sampling

    def sampled(self, step: int) -> bool:
        return self.every > 0 and bool(self.convs) and (step - 1) % self.every == 0

    def on_forward_start(self, step: int, *, training: bool) -> None:
        first = step != self._forward_step
        if training and first:
            self._forward_step = step
            self._queued = []
        self._sampling = training and first and not self._exhausted and self.sampled(step)

    def on_output(self, name: str, output: Any) -> None:
        if not self._sampling or name not in self._conv_names:
            return
        y = first_float_tensor(output)
        if y is None or y.dim() != 4 or y.shape[0] == 0:
            return
        self._queued.append((name, "feature_map", *quantize(y[0, : self.max_maps])))

    def on_after_optimizer_step(self) -> dict[str, list[Any]] | None:
        """The ``samples`` columns of a sampled step (feature maps, then filters), or None."""
        queued, self._queued = self._queued, []
        if not self._sampling:  # checked before no_grad: entering it costs ~5 us a step
            return None
        self._sampling = False
        with torch.no_grad():
            return self._collect(queued)

    def _collect(self, queued: list[Any]) -> dict[str, list[Any]] | None:
        if self.convs:
            name, conv = self.convs[0]
            w = conv.weight.detach()
            kernels = w.reshape(-1, *w.shape[2:])[: self.max_maps]
            queued.append((name, "filter", *quantize(kernels)))
        columns: dict[str, list[Any]] = {
            k: [] for k in ("module", "what", "shape", "dtype", "data", "lo", "hi")
        }
        for name, what, q, lo, hi in queued:
            data = _to_bytes(q)
            if self.bytes_used + len(data) > self.budget_bytes:
                self._exhausted = True
                log.info(
                    "sample budget of %d bytes reached; no more feature maps or filters",
                    self.budget_bytes,
                )
                break
            self.bytes_used += len(data)
            columns["module"].append(name)
            columns["what"].append(what)
            columns["shape"].append(list(q.shape))
            columns["dtype"].append("uint8")
            columns["data"].append(data)
            columns["lo"].append(lo.double().cpu().tolist())
            columns["hi"].append(hi.double().cpu().tolist())
        return columns if columns["module"] else None


def _to_bytes(q: torch.Tensor) -> bytes:
    host = q.contiguous().cpu()
    try:
        return host.numpy().tobytes()
    except (RuntimeError, TypeError):  # torch built without numpy
        return bytes(host.reshape(-1).tolist())
