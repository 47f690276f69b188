"""HookSet: the one place that registers PyTorch hooks and keeps every handle; and
OutermostForwards: which forwards of a model are the step's forwards.

``remove()`` takes off exactly what was added, so a closed collector leaves the
model and optimizer as it found them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn


class _Handle(Protocol):
    def remove(self) -> None: ...


class HookSet:
    def __init__(self) -> None:
        self._handles: list[_Handle] = []

    def add(self, handle: Any) -> None:
        """Keep a handle returned by a ``register_*hook`` call."""
        self._handles.append(handle)

    def __len__(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        """Remove every hook added so far (idempotent)."""
        handles, self._handles = self._handles, []
        for handle in reversed(handles):
            handle.remove()


# Registered as hooks as they are: they return None (a value would replace the input or
# the output of the forward).
Start = Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]
End = Callable[[nn.Module, tuple[Any, ...], Any], None]


class OutermostForwards:
    """Calls ``on_start`` and ``on_end`` around the outermost forwards of ``model``: those
    that start while no other module of the model is in its forward.

    Usually that is the model's own forward. But a loop may never call it: a
    LightningModule whose ``training_step`` calls ``self.net(x)``, or a wrapper given as
    ``model=`` whose children the loop calls (``model.encoder(x)``, then
    ``model.head(h)``). Hooks on the root alone would see nothing of such a run.

    So until the first optimizer step with a training forward ends (``step_ended``),
    a pre-hook and a post-hook on every module find the outermost forwards (the cost of
    the model summary's hooks, for one step). Then:

    * only the root ran outermost: the root's two hooks stay, nothing else (the common
      case, and the cheapest: no nesting to count);
    * otherwise the modules seen running outermost, and the root, keep a pre-hook and
      a post-hook that count nesting, so that only the outermost of them calls back
      (a validation that calls the root, whose forward calls ``net``, is one forward).

    A module first called outermost after that (a branch only validation uses) is not
    seen. ``settle_on_repeat`` (for a collector without an optimizer, whose
    ``step_ended`` never comes): settle when a module runs outermost in training a
    second time.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        on_start: Start,
        on_end: End | None,
        settle_on_repeat: bool = False,
    ) -> None:
        self._model = model
        self._on_start = on_start
        self._on_end = on_end
        self._settle_on_repeat = settle_on_repeat
        self._hooks = HookSet()  # what stays
        self._finding = HookSet()  # on every module, until settled
        self._depth = 0
        self._found: dict[int, nn.Module] = {}  # modules other than the root run outermost
        self._trained: set[int] = set()  # modules run outermost in training, by id
        self._repeated = False

    def attach(self) -> None:
        root = self._model
        self._hooks.add(root.register_forward_pre_hook(self._on_start, with_kwargs=True))
        if self._on_end is not None:
            self._hooks.add(root.register_forward_hook(self._on_end))
        if next(root.children(), None) is None:
            return  # a leaf model: no other module can run
        for module in root.modules():
            self._finding.add(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._finding.add(module.register_forward_hook(self._leave, always_call=True))

    def remove(self) -> None:
        """Take every hook off (idempotent)."""
        self._finding.remove()
        self._hooks.remove()

    @property
    def finding(self) -> bool:
        """Whether the outermost forwards are still being looked for."""
        return len(self._finding) > 0

    def step_ended(self) -> None:
        """An optimizer step ended: no forward is in progress (a forward interrupted by
        ``KeyboardInterrupt`` skips the post-hooks: the count starts over here)."""
        self._depth = 0
        if self._trained and self.finding:
            self._settle()

    # -- while finding ---------------------------------------------------------------------

    def _enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        depth = self._depth
        self._depth = depth + 1
        if depth:
            return
        if module.training and torch.is_grad_enabled():
            if id(module) in self._trained:
                self._repeated = True
            self._trained.add(id(module))
        if module is not self._model:  # the root's own hooks call back for it
            self._found.setdefault(id(module), module)
            self._on_start(module, args, kwargs)

    def _leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth or forward_raised(output):
            return  # a forward that raised: torch is iterating the hooks (no change now)
        if module is not self._model and self._on_end is not None:
            self._on_end(module, args, output)
        if self._settle_on_repeat and self._repeated:
            self._settle()  # after the forward's own hooks: changing them is safe

    def _settle(self) -> None:
        self._finding.remove()
        self._depth = 0
        if not self._found:
            return
        self._hooks.remove()
        for module in (self._model, *self._found.values()):
            self._hooks.add(module.register_forward_pre_hook(self._entry_start, with_kwargs=True))
            self._hooks.add(module.register_forward_hook(self._entry_end, always_call=True))

    # -- settled on several modules --------------------------------------------------------

    def _entry_start(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        depth = self._depth
        self._depth = depth + 1
        if not depth:
            self._on_start(module, args, kwargs)

    def _entry_end(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if not self._depth and self._on_end is not None and not forward_raised(output):
            self._on_end(module, args, output)


def forward_raised(output: Any) -> bool:
    """Whether an always-called forward hook runs for a forward that raised (torch then
    passes no output, and iterates the module's hooks in place: none may be removed)."""
    return output is None and sys.exc_info()[0] is not None
