"""Statistics of the model's input at sampled training steps (the ``inputs`` stream).

At the first training forward of a step whose activations are sampled, the model's
first floating-point input is reduced per feature (a ``[batch, features]`` input) or
per channel (``[batch, channels, ...]``: an image, a sequence of embeddings as
``[batch, channels, length]``): mean, std, min and max over every other dimension,
on the input's device, for the first ``MAX_INPUT_FEATURES``. The four vectors go to the
host in one transfer after the optimizer step (a sampled step synchronises anyway).
A 1-d input (one value per example) is one feature; integer inputs (token ids) are
not statistics of a scale and are skipped. What the rule ``unnormalized_inputs``
reads: raw 0-255 pixels, features on wildly different scales, far from zero mean.
"""

from __future__ import annotations

from typing import Any

import torch

MAX_INPUT_FEATURES = 256
"""Features (or channels) recorded per sampled step: enough for tabular data and
images; a wide input (a flattened image given to an MLP) keeps its first ones."""


class InputWatcher:
    """The pending input statistics of the step in progress."""

    def __init__(self) -> None:
        self._pending: tuple[str, int, torch.Tensor] | None = None

    def on_forward_start(self, first_input: Any, *, sampled: bool) -> None:
        """A training forward: reduce its input when ``sampled`` and none was yet this
        step (of accumulated micro-batches, the first one's)."""
        if not sampled or self._pending is not None or not isinstance(first_input, torch.Tensor):
            return
        x = first_input.detach()
        if not x.is_floating_point() or x.numel() == 0 or x.dim() == 0:
            return
        if x.dim() == 1:
            x, layout = x.reshape(-1, 1), "features"
        elif x.dim() == 2:
            layout = "features"
        else:
            layout = "channels"
            x = x.movedim(1, -1).reshape(-1, x.shape[1])  # [everything else, channels]
        x = x[:, :MAX_INPUT_FEATURES].double()
        stats = torch.stack(
            [x.mean(0), x.std(0, correction=0), x.amin(0), x.amax(0)]
        )  # one [4, features] tensor: one transfer
        self._pending = (layout, x.shape[0], stats)

    def on_after_optimizer_step(self) -> dict[str, Any] | None:
        """The ``inputs`` columns of the step's sampled input, or None."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        layout, rows, stats = pending
        mean, std, lo, hi = stats.cpu().tolist()
        n = len(mean)
        return {
            "index": list(range(n)),
            "layout": [layout] * n,
            "numel": [rows] * n,
            "mean": mean,
            "std": std,
            "min": lo,
            "max": hi,
        }
