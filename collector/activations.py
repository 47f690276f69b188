"""Activation statistics of leaf modules, and the per-step NaN/Inf origin check.

Forward hooks on the leaf modules (modules without children; registered only for
the forwards that are sampled, since an idle hook still costs its dispatch) look
at the first *training* forward of an optimizer step; evaluation passes (eval mode or
``torch.no_grad()``) are not recorded. Step numbering follows the collector: the
forward of the step in progress ``s`` is recorded under step ``s``.

* Every ``every`` steps: ``numel, mean, std, min, max, zero_frac, nonfinite`` of the
  module's output (its first floating tensor, for tuple/dict outputs), plus
  - ``saturated_frac`` for bounded activations: the share of outputs within
    ``1e-3 * max(1, (hi - lo) / 2)`` of a saturating bound, i.e. within 1e-3 of 0
    or 1 for Sigmoid/Hardsigmoid, of -1 or 1 for Tanh/Softsign/Hardtanh, of 6 for
    ReLU6 (its lower bound 0 is ReLU's normal zero, not saturation);
  - ``dead_frac`` for ReLU/ReLU6: the share of units (dim 1: channels of a conv
    output, features of a linear one) that are <= 0 for every example and position
    of the batch. ``nn.ReLU`` modules' outputs, and the outputs of modules that feed a
    functional ReLU (``F.relu`` in a ``forward``, found by ``collector.modules``): there
    the units never positive.
  Reductions are queued on the device inside the hook (in-place layers that run
  later cannot change them) and moved to the host in one transfer after the step.
* Every ``nan_check_every`` steps (default: every step): the sum of the output of
  each leaf that can create a non-finite value (parametric layers and unknown
  modules; ReLU, pooling, dropout and the like cannot from finite inputs, so they are
  skipped) is queued, accumulated in at least float32. NaN and Inf propagate into a
  sum (+Inf and -Inf together give NaN); a finite output whose sum overflows
  (|sum| > 3.4e38: activations that are effectively infinite already) is reported as
  well. A sum is the cheapest reduction there is: on this CPU ~6 us per small layer
  output against ~12 us for ``aminmax`` and ~200 us for ``isfinite(y).all()``. The
  results are read in batches of ``CHECK_BATCH`` steps (one transfer), and the first
  module in forward order (or the model's input) whose output was non-finite at the
  first such step is reported once, as the origin, with that sum. Modules with
  children and a ``forward`` of their own (the model itself included, as
  ``(model)``; not ``nn.Sequential``) are checked too: their hooks fire after their
  children's, so a NaN made by their own functional code (``torch.log(self.fc(x))``)
  is theirs (``own_code`` in the event), not the next layer's. A NaN made by code
  *between* two children is still blamed on the child that consumes it. No reference to
  the activations is kept. Checking every N-th step divides the cost but sees an
  origin only at the next checked step (by then NaN weights may make the first layer
  look guilty) and can miss a NaN that lasts one step.
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from collector import stats
from store.schema import ORIGIN_INPUT

CHECK_BATCH = 16
"""Steps of NaN-check results read together (see ActivationWatcher.find_origin)."""

INPUT = ORIGIN_INPUT
"""The module name reported when the model's input itself is non-finite."""

_SATURATION_TOLERANCE = 1e-3
# (low, high, which bounds saturate) of the outputs of bounded activations.
_BOUNDS: dict[type[nn.Module], tuple[float, float, str]] = {
    nn.Sigmoid: (0.0, 1.0, "both"),
    nn.Hardsigmoid: (0.0, 1.0, "both"),
    nn.Tanh: (-1.0, 1.0, "both"),
    nn.Softsign: (-1.0, 1.0, "both"),
    nn.ReLU6: (0.0, 6.0, "high"),
}
_DEAD_TYPES = (nn.ReLU, nn.ReLU6)
# The summary statistics of an activation row (``tensors`` has norm and abs_max too).
_ACTIVATION_STATS = ("numel", "mean", "std", "min", "max", "zero_frac", "nonfinite")


def leaf_modules(
    model: nn.Module, *, include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[tuple[str, nn.Module]]:
    """Leaf modules in registration order, filtered by shell-style name patterns."""
    out = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None and _chosen(name, include, exclude):
            out.append((name, module))
    return out


def _chosen(name: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether shell-style ``include``/``exclude`` patterns keep the module ``name``."""
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(name, p) for p in exclude))


MODEL = "(model)"
"""The module name reported when the model's own ``forward`` code makes the NaN/Inf."""

# Containers whose forward only chains their children: no code of their own to check.
_CONTAINER_FORWARDS = (nn.Sequential.forward,)


def own_code_modules(
    model: nn.Module, *, include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[tuple[str, nn.Module]]:
    """Modules with children and a ``forward`` of their own (the model itself included,
    named ``MODEL``), filtered like ``leaf_modules``.

    Functional code inside such a module (``torch.log(self.linear(x))``) is the
    commonest NaN source a leaf check cannot see: its children's outputs are finite
    and its own is not. Their output hooks fire after their children's, so the first
    non-finite output in hook order is still the module whose code made it.
    """
    out = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            continue  # a leaf: leaf_modules
        forward = getattr(type(module), "forward", None)
        if forward is None or forward in _CONTAINER_FORWARDS or not hasattr(module, "forward"):
            continue
        if isinstance(module, nn.ModuleList | nn.ModuleDict):
            continue
        name = name or MODEL
        if _chosen(name, include, exclude):
            out.append((name, module))
    return out


# Modules that cannot turn finite inputs into NaN/Inf: the NaN check skips them, since
# a non-finite output of theirs always has an upstream origin that is checked.
_FINITE_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softsign,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def can_create_nonfinite(module: nn.Module) -> bool:
    """False for element-wise/selection layers that map finite inputs to finite outputs."""
    return not isinstance(module, _FINITE_PRESERVING)


def first_float_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, list | tuple):
        for v in value:
            t = first_float_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = first_float_tensor(v)
            if t is not None:
                return t
    return None


def _bounds(module: nn.Module) -> tuple[float, float, str] | None:
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return (float(module.min_val), float(module.max_val), "both")
    for kind, bounds in _BOUNDS.items():
        if isinstance(module, kind):
            return bounds
    return None


class ActivationWatcher:
    def __init__(
        self,
        leaves: list[tuple[str, nn.Module]],
        *,
        every: int | Callable[[int], bool],
        nan_check_every: int,
    ) -> None:
        self.leaves = leaves
        self.every = every
        self.nan_check_every = nan_check_every
        self.origin_found = False
        self.found: tuple[int, dict[str, Any]] | None = None  # (step, origin) once found
        self._forward_step = -1
        self._sampling = False
        self._checking = False
        # Per step, in forward order: (module, type, stats, saturated, dead) and sums.
        self._pending: list[tuple[str, str, stats.PendingStats, Any, Any]] = []
        # name, type, numel, sum of the step's forward: the model's input (appended by
        # on_forward_start), then the check hooks' modules; cleared in place.
        self._sums: list[tuple[str, str, int, Any]] = []
        self._unchecked: list[tuple[int, list[tuple[str, str, int, Any]]]] = []
        self._check_seconds = 0.0  # in the check hooks since take_check_seconds()
        self._composite: set[str] = set()  # checked modules with children (own_code_modules)
        # modules whose output feeds a functional ReLU (``ModelSummary.feeds``): their
        # dead units are the ones never positive, as an nn.ReLU's are the ones at 0
        self.pre_relu: frozenset[str] = frozenset()

    def sampled(self, step: int) -> bool:
        """``every`` is a stride, or a schedule (``collector.budget``) asked per step."""
        if callable(self.every):
            return self.every(step)
        return self.every > 0 and (step - 1) % self.every == 0

    def checked(self, step: int) -> bool:
        """Whether the NaN check looks at the forward of ``step``."""
        n = self.nan_check_every
        return n > 0 and (n == 1 or (step - 1) % n == 0)

    def on_forward_start(self, step: int, *, training: bool, first_input: Any) -> None:
        """Called by the model's forward pre-hook with the step in progress."""
        first = step != self._forward_step
        if training and first:
            self._forward_step = step
            self._pending = []
            self._sums.clear()
        self._sampling = training and first and self.sampled(step)
        self._checking = training and first and self.checked(step) and not self.origin_found
        tensor_input = isinstance(first_input, torch.Tensor) and first_input.is_floating_point()
        if self._checking and tensor_input:
            self._sums.append((INPUT, "input", first_input.numel(), _total(first_input.detach())))

    @property
    def sampling(self) -> bool:
        """Whether the forward in progress is a sampled one (leaf hooks wanted)."""
        return self._sampling

    def on_sampled_output(self, name: str, module: nn.Module, output: Any) -> None:
        y = first_float_tensor(output) if self._sampling else None
        if y is None or y.numel() == 0:
            return
        y = y.detach()
        kind = type(module).__name__
        if name in self.pre_relu:
            dead = _never_positive(y, _unit_dim(module, y))
        else:
            dead = _dead(module, y)
        self._pending.append((name, kind, stats.reduce([y]), _saturated(module, y), dead))

    def check_hook(
        self, name: str, module: nn.Module, failures: dict[str, int]
    ) -> Callable[..., None]:
        """A forward hook for the NaN check of one module, as lean as a hook can be: it
        runs on every training step. It guards itself (counting into ``failures``, as
        ``collector.guard`` does) to save the wrapper's call."""
        kind = type(module).__name__
        pending = self._sums
        if next(module.children(), None) is not None:
            self._composite.add(name)

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._checking:
                return
            start = time.perf_counter()
            try:
                y = output if isinstance(output, torch.Tensor) else first_float_tensor(output)
                if y is not None and y.is_floating_point() and y.numel():
                    pending.append((name, kind, y.numel(), _total(y.detach())))
            except Exception:
                failures["forward_check"] = failures.get("forward_check", 0) + 1
            self._check_seconds += time.perf_counter() - start

        return hook

    def begin_check(self) -> None:
        """Check forwards outside the training step's own (a replay, ``collector.replay``):
        what ``check_input`` and the check hooks see until ``end_check``."""
        self._checking = True
        self._sums.clear()

    def check_input(self, first_input: Any) -> None:
        """The model's input of the next checked forward."""
        if isinstance(first_input, torch.Tensor) and first_input.is_floating_point():
            self._sums.append((INPUT, "input", first_input.numel(), _total(first_input.detach())))

    def end_check(self, step: int) -> tuple[int, dict[str, Any]] | None:
        """The origin the checked forward shows, as found at ``step`` (None: all finite)."""
        self._queue_check(step)
        self._checking = False
        self._sums.clear()
        return self.find_origin()

    def take_check_seconds(self) -> float:
        """Seconds spent in the NaN-check hooks since the last call (the hooks' own
        dispatch by torch is not included: it cannot be timed from inside)."""
        seconds, self._check_seconds = self._check_seconds, 0.0
        return seconds

    def on_after_optimizer_step(
        self, step: int
    ) -> tuple[dict[str, Any] | None, tuple[int, dict[str, Any]] | None]:
        """(``activations`` columns of a sampled step or None, (step, origin) or None).

        Every tensor here was detached in the hooks: no ``no_grad`` needed (entering it
        costs ~5 us, on every step)."""
        columns = self._collect_stats() if self._pending else None
        if self._checking:
            self._queue_check(step)
        origin = self.find_origin() if len(self._unchecked) >= CHECK_BATCH else None
        self._pending = []
        self._sums.clear()
        self._sampling = self._checking = False
        return columns, origin

    def _collect_stats(self) -> dict[str, Any]:
        pending = self._pending
        host = stats.concat(stats.to_host([p for _, _, p, _, _ in pending]))
        extras = [e for _, _, _, sat, dead in pending for e in (sat, dead)]
        present = [e for e in extras if e is not None]
        values = torch.stack([e.double() for e in present]).cpu().tolist() if present else []
        it = iter(values)
        host_extras = [None if e is None else next(it) for e in extras]
        columns: dict[str, Any] = {
            "module": [name for name, _, _, _, _ in pending],
            "module_type": [kind for _, kind, _, _, _ in pending],
            "saturated_frac": host_extras[0::2],
            "dead_frac": host_extras[1::2],
        }
        return columns | host.packed(_ACTIVATION_STATS)

    def _queue_check(self, step: int) -> None:
        """Keep this step's sums on the device; they are read in batches (see find_origin)."""
        if self._sums:  # a copy: self._sums is cleared in place after the step
            self._unchecked.append((step, list(self._sums)))

    def find_origin(self) -> tuple[int, dict[str, Any]] | None:
        """Read the queued sums in one transfer; the first non-finite output, with its step.

        The check runs every step, but its result is read only every ``CHECK_BATCH``
        steps (and on close): one transfer and one Python scan instead of one per step.
        The origin is exact; it is merely recorded up to that many steps later.
        """
        queued, self._unchecked = self._unchecked, []
        if not queued or self.origin_found:
            return None
        parts = [t for _, named in queued for _, _, _, t in named]
        if any(t.dtype != torch.float32 for t in parts):
            parts = [t.double() for t in parts]  # float64 sums stay exact
        flat = torch.stack(parts).cpu().tolist()
        at = 0
        for step, named in queued:
            for name, kind, numel, _ in named:
                total = flat[at]
                at += 1
                if not math.isfinite(total):
                    self.origin_found = True
                    payload = {"module": name, "module_type": kind, "numel": numel}
                    if name in self._composite:
                        payload["own_code"] = True  # its submodules' outputs were finite
                    self.found = (step, payload | {"sum": total})
                    return self.found
        return None

    def origin_now(self, step: int) -> tuple[tuple[int, dict[str, Any]] | None, bool]:
        """(the origin, whether it was found just now), reading every queued sum and
        those of the step in progress (``step``, when its forward was checked): what
        the NaN guard asks before it stops the loop."""
        if self._checking:
            self._queue_check(step)
            self._checking = False  # queued once: not again after the optimizer step
        new = self.find_origin()
        return self.found, new is not None


def _total(y: torch.Tensor) -> torch.Tensor:
    """The sum of ``y``, accumulated in float32 at least (a float16 sum overflows at 65504)."""
    return y.sum(dtype=torch.float32) if y.element_size() < 4 else y.sum()


def _saturated(module: nn.Module, y: torch.Tensor) -> torch.Tensor | None:
    bounds = _bounds(module)
    if bounds is None:
        return None
    lo, hi, sides = bounds
    tol = _SATURATION_TOLERANCE * max(1.0, (hi - lo) / 2)
    near = y >= hi - tol
    if sides == "both":
        near = near | (y <= lo + tol)
    return near.float().mean()


def _dead(module: nn.Module, y: torch.Tensor) -> torch.Tensor | None:
    if not isinstance(module, _DEAD_TYPES):
        return None
    return _never_positive(y, 1)


def _unit_dim(module: nn.Module, y: torch.Tensor) -> int:
    """Where a layer's units are: channels (dim 1) of a conv or norm output over maps,
    features (the last dim) of anything else (a Linear over a sequence: [B, T, H])."""
    spatial = isinstance(module, nn.modules.conv._ConvNd | nn.modules.batchnorm._NormBase)
    return 1 if spatial and y.dim() > 2 else -1


def _never_positive(y: torch.Tensor, unit_dim: int) -> torch.Tensor | None:
    """The share of units (``unit_dim``) that are <= 0 for every example of the batch."""
    if y.dim() < 2:
        return None
    unit = unit_dim % y.dim()
    dims = [d for d in range(y.dim()) if d != unit]
    return (y.amax(dim=dims) <= 0).float().mean()
