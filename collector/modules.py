"""The model summary: every module's place, parameters and shapes, from one forward pass.

Temporary hooks on every module watch the first *training* forward of the model
(like torchinfo, but on the user's real batch instead of a dummy input), then
remove themselves. A module called several times (shared weights) gets one row
with ``calls`` > 1 and the shapes of its first call; a module never called gets
``calls`` = 0 and no shapes (an unused branch).

The forward recorded is one *pass*: the outermost forwards (those that start while
no other module of the model is in its forward) from the first training one until
the root's forward ends, a module runs outermost a second time (the next
micro-batch), or the optimizer step ends (``step_ended``). A loop that never calls
the model itself, only its children (a LightningModule's ``training_step`` calling
``self.net(x)``, or ``encoder`` then ``head``), gets the pass it runs: each child
called once, the root ``calls`` = 0.

The same forward tells which module outputs feed a *functional* ReLU
(``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms called in a
``forward``, not an ``nn.ReLU`` module): a ``TorchFunctionMode`` sees those calls, and
an input that is a module's output marks that module (``feeds`` = ``"relu"``). Their
units are dead when their output is never positive (``collector.activations``), as an
``nn.ReLU``'s are when it outputs zeros.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from collector.hooks import HookSet, forward_raised

ROOT = ""
"""The module name of the model itself (PyTorch's own name for the root module)."""


def describe(value: Any) -> Any:
    """A JSON-able shape description: [dims] for a tensor, lists/dicts of them, None."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if value is None:
        return None
    return type(value).__name__


class ModelSummary:
    """Records the summary during the first training forward; ``rows()`` when complete.

    ``training_only=False`` records the first forward whatever the mode (a summary
    asked for on purpose, e.g. TensorBoard's ``add_graph``).
    """

    def __init__(self, model: nn.Module, *, training_only: bool = True) -> None:
        self._model = model
        self._training_only = training_only
        self._names = {id(m): name for name, m in model.named_modules()}
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._calls: dict[str, int] = {}
        self._hooks = HookSet()
        self.done = False
        # id of a module's output tensor -> module name, during the recorded forward
        self._output_ids: dict[int, str] = {}
        self._kept: list[torch.Tensor] = []  # those outputs, alive while their ids are keys
        self.feeds: dict[str, str] = {}  # module -> the functional activation its output feeds
        self._mode: _FunctionalReLU | None = None
        self._in_relu_module = 0
        self._depth = 0  # module forwards in progress (all of them: the nesting)
        self._outermost: set[str] = set()  # modules of the recorded pass run outermost

    def attach(self, guard: Any) -> None:
        """Hook every module; ``guard`` wraps each callback (see collector.guard)."""
        for module in self._model.modules():
            pre = guard("summary_pre")(self._on_input)
            post = guard("summary_post")(self._on_output)
            self._hooks.add(module.register_forward_pre_hook(pre, with_kwargs=True))
            # always called: the nesting count, and the mode, end with a forward that raises
            self._hooks.add(module.register_forward_hook(post, always_call=True))

    def detach(self) -> None:
        self._end_mode()
        self._hooks.remove()
        self._output_ids.clear()
        self._kept.clear()

    def _end_mode(self, *args: Any) -> None:
        mode, self._mode = self._mode, None
        if mode is not None:
            mode.__exit__(None, None, None)

    def watching(self) -> bool:
        return len(self._hooks) > 0

    def step_ended(self) -> bool:
        """An optimizer step ended: the pass is complete if anything was recorded.
        Whether the summary is done (``rows()`` ready)."""
        self._depth = 0
        if not self.done and self._calls:
            self.done = True
            self.detach()
        return self.done

    def _on_input(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        outermost = not self._depth
        self._depth += 1
        if not self._recording(module):
            return  # an evaluation pass: wait for a training forward
        name = self._names.get(id(module))
        if name is None:
            return
        if outermost:
            if name in self._outermost:  # the pass ran: this is the next one
                self.done = True
                self.detach()
                return
            self._outermost.add(name)
            if self._mode is None and not torch.compiler.is_compiling():
                self._mode = _FunctionalReLU(self)
                self._mode.__enter__()
        if isinstance(module, _RELU_MODULES):
            self._in_relu_module += 1
        self._calls[name] = self._calls.get(name, 0) + 1
        if name not in self._inputs:
            described = describe(args[0]) if len(args) == 1 else describe(args)
            self._inputs[name] = (
                {"args": described, "kwargs": describe(kwargs)} if kwargs else described
            )

    def _recording(self, module: nn.Module) -> bool:
        return not self._training_only or (module.training and torch.is_grad_enabled())

    def _on_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if not self._depth:
            self._end_mode()  # the functional ReLUs of an outermost forward only
        if not self._recording(module) or forward_raised(output):
            return
        name = self._names.get(id(module))
        if isinstance(module, _RELU_MODULES):
            self._in_relu_module = max(0, self._in_relu_module - 1)
        # None: a forward that raised (an always-called hook gets no output)
        if name is not None and name not in self._outputs and output is not None:
            self._outputs[name] = describe(output)
        if name is not None and isinstance(output, torch.Tensor) and module is not self._model:
            self._output_ids[id(output)] = name
            self._kept.append(output)
        if module is self._model:
            self.done = True
            self.detach()

    def rows(self) -> dict[str, list[Any]]:
        """The ``modules`` stream columns: one row per module, in registration order."""
        columns: dict[str, list[Any]] = {
            k: []
            for k in (
                "module",
                "module_type",
                "parent",
                "depth",
                "params",
                "own_params",
                "trainable_params",
                "calls",
                "input_shape",
                "output_shape",
                "feeds",
            )
        }
        for name, module in self._model.named_modules():
            total = list(module.parameters())
            own = list(module.parameters(recurse=False))
            columns["module"].append(name)
            columns["module_type"].append(type(module).__name__)
            columns["parent"].append(None if name == ROOT else name.rpartition(".")[0])
            columns["depth"].append(0 if name == ROOT else name.count(".") + 1)
            columns["params"].append(sum(p.numel() for p in total))
            columns["own_params"].append(sum(p.numel() for p in own))
            columns["trainable_params"].append(sum(p.numel() for p in total if p.requires_grad))
            columns["calls"].append(self._calls.get(name, 0))
            columns["input_shape"].append(_json(self._inputs.get(name)))
            columns["output_shape"].append(_json(self._outputs.get(name)))
            columns["feeds"].append(self.feeds.get(name))
        return columns

    def saw_relu(self, value: Any) -> None:
        """A functional ReLU read ``value``: mark the module that output it."""
        if self._in_relu_module:
            return  # nn.ReLU's own forward calls F.relu: the module is seen as a module
        name = self._output_ids.get(id(value))
        if name is not None:
            self.feeds.setdefault(name, "relu")


_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = frozenset(
    {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
)


class _FunctionalReLU(TorchFunctionMode):
    """Sees ReLU calls during the summary's forward (``ModelSummary.saw_relu``)."""

    def __init__(self, summary: ModelSummary) -> None:
        super().__init__()
        self._summary = summary

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in _RELU_FUNCTIONS and args:
            with contextlib.suppress(Exception):  # a diagnostic must never break the forward
                self._summary.saw_relu(args[0])
        return func(*args, **(kwargs or {}))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
