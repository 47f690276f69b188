"""The NaN-origin check by replay: nothing to pay on a healthy step.

Where the step's global gradient norm can be read on the host for free (the CPU; any
device under ``on_nonfinite="stop"``/``"raise"``, which reads it every step anyway), the
collector does not look at module outputs on every step. It keeps a reference to the
inputs of each outermost training forward of the step in progress (no copy), and the
optimizer's pre-step hook reads the gradient norm it computed anyway. When that norm is
not finite, before the optimizer applies the gradients, the held forwards run again
under ``no_grad`` with the NaN check's hooks on (``collector.activations``): the same
weights, the same inputs, the same autocast, so the first module whose output is
non-finite is the one the every-step check would have named, at the same step. The
model's buffers (BatchNorm's running statistics) and the random number generators are
put back after it: training goes on exactly as it would have.

The trade-offs (README "NaN origin"):

* a non-finite output that does not reach the gradients (masked away, an unused
  branch) is not reported; the every-step check reported it;
* the replay has to reproduce the forward: a NaN that only some dropout mask makes, a
  forward that depends on state outside the buffers (a Python counter) or on inputs the
  loop changed in place after the forward, may not come back, and then no origin is
  named; the forward's own side effects outside the buffers happen twice;
* at most ``MAX_REPLAYS`` replays a run (each costs a forward without gradients);
* distributed runs keep the every-step check (their forwards may communicate, and a
  replay on one rank alone would hang the others), and so do accelerators without the
  guard (reading the norm there is a synchronisation per step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

MAX_HELD = 64
"""Forwards held per step (gradient accumulation over more micro-batches keeps the first)."""

MAX_REPLAYS = 8
"""Replays per run: a norm that overflows with finite outputs would replay every step."""

# module, args, kwargs, autocast dtype (None: autocast off)
Held = tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any], torch.dtype | None]


class HeldForwards:
    """The outermost training forwards of the step in progress, to replay on a NaN."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self._model = model
        self._device = device
        self._held: list[Held] = []
        self.replays = 0
        self.replaying = False
        """True while the held forwards run again (the step hooks ignore them)."""

    def hold(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        held = self._held
        if len(held) < MAX_HELD:
            kind = self._device.type
            dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
            held.append((module, args, kwargs, dtype))

    def clear(self) -> None:
        """The step ended: its inputs are the loop's again."""
        if self._held:
            self._held = []

    @property
    def can_replay(self) -> bool:
        return bool(self._held) and self.replays < MAX_REPLAYS

    def replay(self, before: Callable[[Any], object]) -> None:
        """Run the held forwards again, without gradients, leaving no trace in the model's
        buffers or the random number generators; ``before`` gets each one's first
        positional argument (None without one) first. The caller's hooks see them."""
        self.replays += 1
        with self._untouched():
            for module, args, kwargs, dtype in self._held:
                before(args[0] if args else None)
                autocast = (
                    torch.autocast(self._device.type, dtype=dtype)
                    if dtype is not None
                    else contextlib.nullcontext()
                )
                with autocast:
                    module(*args, **kwargs)

    @contextlib.contextmanager
    def _untouched(self) -> Iterator[None]:
        devices = [self._device] if self._device.type == "cuda" else []
        saved = [(b, b.detach().clone()) for b in self._model.buffers()]
        self.replaying = True
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                yield
        finally:
            self.replaying = False
            with torch.no_grad():
                for buffer, copy in saved:
                    buffer.copy_(copy)
