"""Per-parameter gradient, weight and update statistics on sampled optimizer steps.

On a sampled step, ``on_before_optimizer_step`` copies the weights into a kept
buffer; ``on_after_optimizer_step`` queues the gradient reductions, turns the copy
into the update in place (``w_{t-1} - w_t``, reported negated), queues the weight and
update reductions, and moves all three to the host in one transfer.

Gradients are read before the step when the backward ran before it (the usual loop),
because some optimizers change ``.grad`` in place during the step (SGD with
``nesterov=True`` adds the momentum buffer to it). They are read after the step when
the backward runs inside it: ``optimizer.step(closure)`` (Lightning's automatic
optimization, LBFGS) calls the backward after the pre-step hook, when ``.grad`` still
holds the previous step's gradients or nothing. Which case a step is, a
post-accumulate-grad hook on one watched parameter tells (``attach``).

A parameter frozen on a sampled step (``requires_grad=False``) is not written for that
step: freezing is a decision, not a fault, and its rows would only repeat it (no
gradient, no update); the rules read a missing gradient of a written parameter as one
that left the graph. Which parameters are trainable is read once per sampled step.

The buffer (one copy of the trainable watched weights, on their device) is allocated
once and reused: allocating it on every sampled step costs more than all the reductions on a
CPU (a fresh 44 MB block faults in its pages: ~41 ms for resnet18's 11M weights
against ~7 ms to copy into an existing one).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import torch

from collector import stats
from store.schema import TensorKind


def select_parameters(
    model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters to watch, in model order (depth order for sequential models).

    Trainable parameters of the model, and the frozen ones (``requires_grad=False``) the
    optimizer holds, under the model's names: they may be unfrozen later (gradual
    unfreezing), and are only written while trainable (``ParamWatcher``). Any optimizer
    parameter the model does not name is called ``group<g>.<i>``. ``include``/``exclude``
    are shell-style patterns matched against the names.
    """
    in_optimizer: set[int] = set()
    if optimizer is not None:
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named: list[tuple[str, torch.nn.Parameter]] = []
    seen: set[int] = set()
    if model is not None:
        for name, p in model.named_parameters():
            if (p.requires_grad or id(p) in in_optimizer) and id(p) not in seen:
                named.append((name, p))
                seen.add(id(p))
    if optimizer is not None:
        for g, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if id(p) not in seen:
                    named.append((f"group{g}.{i}", p))
                    seen.add(id(p))

    def wanted(name: str) -> bool:
        if include and not any(fnmatch.fnmatchcase(name, pat) for pat in include):
            return False
        return not (exclude and any(fnmatch.fnmatchcase(name, pat) for pat in exclude))

    return [(n, p) for n, p in named if wanted(n) and p.numel() > 0]


class ParamWatcher:
    def __init__(
        self, named: list[tuple[str, torch.nn.Parameter]], *, every: int | Callable[[int], bool]
    ) -> None:
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.every = every
        self._previous: list[torch.Tensor] | None = None  # holds w_{t-1} on a sampled step
        self._buffer: list[torch.Tensor] = []
        self._grads: tuple[list[str], stats.PendingStats] | None = None
        self._backward_seen = False  # a gradient was accumulated since the last step
        # the names and parameters trainable on the sampled step in progress
        self._active: tuple[list[str], list[torch.nn.Parameter]] = (self.names, self.params)
        self._labels_key: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._labels_columns: dict[str, pa.Array] = {}

    def attach(self) -> Any:
        """Hook the first watched parameter that takes gradients; the handle (or None).

        Without a hook (or when that parameter gets no gradient), gradients are read
        after the step."""
        for p in self.params:
            if p.requires_grad:
                return p.register_post_accumulate_grad_hook(self._on_grad_accumulated)
        return None

    def _on_grad_accumulated(self, param: torch.Tensor) -> None:
        self._backward_seen = True

    @property
    def pending(self) -> bool:
        """Whether the step in progress was sampled (its statistics come after the step)."""
        return self._previous is not None

    def sampled(self, step: int) -> bool:
        """Steps are counted from 1; the first step is always sampled.

        ``every`` is a stride, or a schedule (``collector.budget``) asked per step."""
        if not self.params:
            return False
        if callable(self.every):
            return self.every(step)
        return self.every > 0 and (step - 1) % self.every == 0

    def on_before_optimizer_step(self, step: int) -> None:
        self._previous, self._grads = None, None
        if not self.sampled(step):  # checked before no_grad: entering it costs ~5 us a step
            return
        self._active = self._trainable()
        if not self._active[1]:  # everything frozen: nothing to write this step
            return
        with torch.no_grad():
            if self._backward_seen:  # the optimizer may change .grad in place: read it now
                self._grads = self._reduce_grads()
            self._previous = self._copy_weights()

    def _trainable(self) -> tuple[list[str], list[torch.nn.Parameter]]:
        """The watched names and parameters that take gradients now."""
        if all(p.requires_grad for p in self.params):
            return self.names, self.params
        kept = [(n, p) for n, p in zip(self.names, self.params, strict=True) if p.requires_grad]
        return [n for n, _ in kept], [p for _, p in kept]

    def _reduce_grads(self) -> tuple[list[str], stats.PendingStats]:
        names, params = self._active
        with_grad = [
            (n, p.grad)
            for n, p in zip(names, params, strict=True)
            if p.grad is not None and not p.grad.is_sparse
        ]
        return [n for n, _ in with_grad], stats.reduce([g for _, g in with_grad])

    def _copy_weights(self) -> list[torch.Tensor]:
        """The weights copied into the kept buffer (re-allocated if a parameter moved)."""
        current = [p.detach() for p in self._active[1]]
        if len(self._buffer) != len(current) or any(
            b.shape != p.shape or b.dtype != p.dtype or b.device != p.device
            for b, p in zip(self._buffer, current, strict=True)
        ):
            self._buffer = [
                torch.empty_like(p, memory_format=torch.contiguous_format) for p in current
            ]
        torch._foreach_copy_(self._buffer, current)
        return self._buffer

    def on_after_optimizer_step(self) -> dict[str, Any] | None:
        """The ``tensors`` stream columns of this step, or None when it was not sampled."""
        self._backward_seen = False
        previous, self._previous = self._previous, None
        if previous is None:
            return None
        with torch.no_grad():
            return self._collect(previous)

    def _collect(self, previous: list[torch.Tensor]) -> dict[str, Any]:
        """The columns of a sampled step; ``previous`` holds w_{t-1} (made the update)."""
        grad_names, grad_pending = self._grads or self._reduce_grads()  # closure: after
        self._grads = None
        current = [p.detach() for p in self._active[1]]
        torch._foreach_sub_(previous, current)  # previous := w_{t-1} - w_t = -update
        weights = stats.reduce(current)
        updates = stats.reduce(previous, negate=True)
        grads, weights_host, updates_host = stats.to_host([grad_pending, weights, updates])
        numbers = stats.concat([grads, weights_host, updates_host]).packed()
        return self._labels(grad_names) | numbers

    def _labels(self, grad_names: list[str]) -> dict[str, pa.Array]:
        """The ``param`` and ``kind`` columns of a step (grad, weight, update rows), as
        Arrow arrays built once per set of trainable parameters and of those with a
        gradient."""
        names = self._active[0]
        key = (tuple(grad_names), tuple(names))
        if self._labels_key != key:
            kinds = [TensorKind.GRAD, TensorKind.WEIGHT, TensorKind.UPDATE]
            groups = [grad_names, names, names]
            self._labels_key = key
            self._labels_columns = {
                "param": pa.array([n for group in groups for n in group], pa.string()),
                "kind": pa.array(
                    [k.value for k, group in zip(kinds, groups, strict=True) for _ in group],
                    pa.string(),
                ),
            }
        return self._labels_columns
