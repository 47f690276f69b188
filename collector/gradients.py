"""The global gradient norm of every step, as backward made it and as the optimizer saw it.

Per optimizer step, on the watched parameters' device, with no host synchronisation:

- ``grad_norm``: the global L2 norm of the gradients at the end of the step's last
  backward, before the loop touches them (``clip_grad_norm_``, ``clip_grad_value_``).
  The end of a backward is an autograd engine callback, queued by a post-accumulate-grad
  hook on the first and last watched parameters (two Python calls per backward).
- ``grad_norm_step``: the same norm in the optimizer's pre-step hook. When the first
  gradient is the same tensor at the same version (no in-place change since the end of
  backward), nothing was clipped and the norm is not computed again.
- ``grad_carried_norm``: the norm of the gradients already present when the step's
  first backward starts: 0 when they were reset (``zero_grad(set_to_none=False)``), None
  when there were none (``zero_grad()``, the default, sets them to None), and the
  previous steps' gradients when ``zero_grad`` was forgotten. The start of a backward is
  a hook on the output tensor of each outermost training forward (``on_forward_end``;
  several when the loop calls the model's children, ``encoder`` then ``head``) until a
  backward starts: the first of them to fire is the one nearest the loss, before any of
  this backward's gradients accumulate (so ``zero_grad()`` between the forward and the
  backward, a common pattern, is seen as the reset it is). With gradient accumulation
  only the first micro-batch's backward is checked: the later ones add to the earlier on
  purpose.
- ``backwards``: how many backward passes the step had (accumulation: more than one).

The norms come back in ``StepGradients``; the collector reads them on the host in
batches (``collector.Collector``). A GradScaler (fp16 AMP) scales the gradients at the
end of backward by a power of two and unscales them before the step: ``host_values``
recognises an exact power-of-two ratio as unscaling, not clipping, and reports the
unscaled norm.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd import Variable

from collector.budget import Overhead

GRADIENT_COLUMNS = ("grad_norm", "grad_norm_step", "clip_ratio", "grad_carried_norm", "backwards")
"""The ``system`` columns ``host_values`` fills."""


@dataclass
class StepGradients:
    """One step's norms: 0-dim tensors on the parameters' device, or None (no gradient)."""

    grad_norm: torch.Tensor | None
    grad_norm_step: torch.Tensor | None
    carried: torch.Tensor | None
    backwards: int

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.grad_norm, self.grad_norm_step, self.carried) if t is not None]


def host_values(step: StepGradients, values: list[float]) -> dict[str, float | int | None]:
    """The ``system`` columns of one step, from its tensors' host ``values`` (in the order
    of ``StepGradients.tensors``)."""
    it = iter(values)
    pre = next(it) if step.grad_norm is not None else None
    at_step = next(it) if step.grad_norm_step is not None else None
    carried = next(it) if step.carried is not None else None
    clip_ratio = None
    if pre is not None and at_step is not None and math.isfinite(pre) and pre > 0:
        ratio = at_step / pre
        if 0 < ratio < 1 - 1e-6 or ratio > 1 + 1e-6:
            exponent = math.log2(ratio)
            if abs(exponent - round(exponent)) < 1e-4:
                pre = at_step  # a GradScaler's unscaling (a power of two), not clipping
            elif ratio < 1:
                clip_ratio = ratio
    return {
        "grad_norm": pre,
        "grad_norm_step": at_step,
        "clip_ratio": clip_ratio,
        "grad_carried_norm": carried,
        "backwards": step.backwards,
    }


class GradientWatch:
    """The per-step global gradient norms of ``params`` (the watched parameters)."""

    def __init__(self, params: list[torch.nn.Parameter], overhead: Overhead | None = None) -> None:
        self.params = params
        # The collector's time per step (the budget's fixed cost): the norms are its work.
        self._overhead = overhead
        trainable = [p for p in params if p.requires_grad]
        # The gradient that tells whether the loop touched them since the end of
        # backward (clipping, unscaling change every gradient in place, this one too).
        self._first = trainable[0] if trainable else (params[0] if params else None)
        # Gradients share their parameter's dtype and device: one fused norm when all do.
        kinds = {(p.dtype, p.device) for p in params}
        self._uniform = len(kinds) <= 1
        self._queued = False
        self._backwards = 0
        self._pre: torch.Tensor | None = None
        self._pre_first: torch.Tensor | None = None  # the first gradient at the end of backward
        self._pre_version = -1
        self._carried: torch.Tensor | None = None
        self._at_step: torch.Tensor | None = None
        self._checked = False  # the carried gradients of this step were looked at
        self._backwards_before_step = 0
        self.closure_seen = False
        """A step ran its backward inside ``optimizer.step(closure)``."""

    @property
    def trainable(self) -> bool:
        """Whether any watched parameter can get a gradient (else ``on_forward_end`` is moot)."""
        return any(p.requires_grad for p in self.params)

    def attach(self) -> list[Any]:
        """Install the parameter hooks; their handles. The caller calls ``on_forward_end``
        after each outermost forward of the model (``collector.hooks.OutermostForwards``)."""
        handles = []
        trainable = [p for p in self.params if p.requires_grad]
        for p in {id(p): p for p in (trainable[:1] + trainable[-1:])}.values():
            handles.append(p.register_post_accumulate_grad_hook(self._on_accumulated))
        return handles

    def _grads(self) -> list[torch.Tensor]:
        return [g for g in map(_GRAD, self.params) if g is not None and not g.is_sparse]

    def _on_accumulated(self, param: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            Variable._execution_engine.queue_callback(self._on_backward_end)

    def _on_backward_end(self) -> None:
        start = time.perf_counter()
        self._queued = False
        self._backwards += 1
        grads = self._grads()
        if grads:
            self._pre = _total_norm(grads, self._uniform)
            first = self._first.grad if self._first is not None else None
            self._pre_first = first
            self._pre_version = first._version if first is not None else -1
        if self._overhead is not None:
            self._overhead.every_step(time.perf_counter() - start)

    def on_forward_end(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """An outermost forward of the model ended: hook its output for the backward's start."""
        if self._checked or not module.training or not torch.is_grad_enabled():
            return
        if all(map(_IS_NONE, map(_GRAD, self.params))):
            # nothing can add a gradient before this forward's backward starts: the
            # step begins reset (zero_grad() set them to None), no hook needed
            self._checked = True
            return
        y = _first_tensor_with_grad(output)
        if y is not None:
            y.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad: torch.Tensor) -> None:
        if self._checked:
            return
        start = time.perf_counter()
        self._checked = True
        grads = self._grads()
        if grads:
            self._carried = _total_norm(grads, self._uniform)
        if self._overhead is not None:
            self._overhead.every_step(time.perf_counter() - start)

    def on_before_optimizer_step(self) -> None:
        self._backwards_before_step = self._backwards
        pre = self._pre
        if pre is not None and self._first is not None:
            first = self._first.grad
            if (
                first is self._pre_first
                and first is not None
                and first._version == self._pre_version
            ):
                self._at_step = pre  # untouched since the end of backward
                return
        grads = self._grads()
        self._at_step = _total_norm(grads, self._uniform) if grads else None

    @property
    def at_step(self) -> torch.Tensor | None:
        """The norm the pre-step hook saw (after ``on_before_optimizer_step``)."""
        return self._at_step

    def on_after_optimizer_step(self) -> StepGradients:
        """This step's norms; the watch starts over for the next step."""
        if self._backwards > self._backwards_before_step:
            # the backward ran inside the step (optimizer.step(closure): LBFGS, Lightning):
            # the pre-step hook saw the previous gradients; the step saw the closure's
            self._at_step = self._pre
            self.closure_seen = True
        out = StepGradients(self._pre, self._at_step, self._carried, self._backwards)
        self._pre = self._pre_first = self._carried = self._at_step = None
        self._pre_version = -1
        self._backwards = 0
        self._checked = False
        return out


_GRAD = operator.attrgetter("grad")
_IS_NONE = functools.partial(operator.is_, None)


def _total_norm(grads: list[torch.Tensor], uniform: bool) -> torch.Tensor:
    """The global L2 norm of ``grads``, on their device: one fused pass when they share a
    device and dtype (``uniform``, the usual case: ~2/3 of ``get_total_norm``'s cost),
    else torch's own grouping. Outside autograd (``no_grad`` costs ~5 us a call, paid
    only when the gradients themselves require grad: ``create_graph=True``)."""
    if grads[0].requires_grad:
        with torch.no_grad():
            return _norm_of(grads, uniform)
    return _norm_of(grads, uniform)


def _norm_of(grads: list[torch.Tensor], uniform: bool) -> torch.Tensor:
    if uniform:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.nn.utils.get_total_norm(grads)


def _first_tensor_with_grad(value: Any) -> torch.Tensor | None:
    """The first tensor that requires grad in a model's output (a tensor, or nested
    tuples, lists and dicts of them)."""
    if isinstance(value, torch.Tensor):
        return value if value.requires_grad else None
    items = value.values() if isinstance(value, dict) else value
    if isinstance(items, list | tuple) or isinstance(value, dict):
        for v in items:
            found = _first_tensor_with_grad(v)
            if found is not None:
                return found
    return None
