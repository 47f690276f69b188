"""Forwards without gradients while modules that behave differently in training train.

Validation under ``torch.no_grad()`` (or ``inference_mode``) without ``model.eval()``
runs Dropout (units dropped at random) and BatchNorm (normalised with the batch's own
statistics, and the running statistics updated with validation data) in training mode:
the validation metrics are worse and noisier than the model's, and read as overfitting.

``ModeWatch.on_forward`` looks at every forward of the model with gradients disabled:
the modules whose behaviour depends on ``training`` (``mode_dependent``) that are in
training mode. The first such forward is reported (the collector records an event with
the modules); the distinct steps after which forwards without gradients ran, and those
of them with a module in training mode, are counted for the run's end (a deliberate
one-off, such as recalibrating BatchNorm statistics, is a minority of those steps).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm


def mode_dependent(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``model`` whose forward differs between training and evaluation."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if (
            (isinstance(m, _DropoutNd) and m.p > 0)
            or isinstance(m, _BatchNorm)
            or (isinstance(m, _InstanceNorm) and m.track_running_stats)
            or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0)
            or (isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers > 1)
        ):
            found.append((name, m))
    return found


class ModeWatch:
    def __init__(self, model: nn.Module) -> None:
        self._modules = mode_dependent(model)
        self.reported = False
        self._last_step = -1
        self._last_training_step = -1
        self.steps = 0  # distinct steps with a forward without gradients
        self.training_steps = 0  # ... of which one ran a mode-dependent module in training

    @property
    def active(self) -> bool:
        return bool(self._modules)

    def on_forward(self, step: int) -> dict[str, Any] | None:
        """A forward without gradients after optimizer step ``step``: the payload of the
        event to record (the first time a mode-dependent module trains in one), or None."""
        if step != self._last_step:
            self._last_step = step
            self.steps += 1
        training = [(n, m) for n, m in self._modules if m.training]
        if not training:
            return None
        if step != self._last_training_step:
            self._last_training_step = step
            self.training_steps += 1
        if self.reported:
            return None
        self.reported = True
        return {
            "modules": [n for n, _ in training[:20]],
            "module_types": sorted({type(m).__name__ for _, m in training}),
            "count": len(training),
            "of": len(self._modules),
        }

    def summary(self) -> dict[str, int]:
        return {"steps": self.steps, "training_mode_steps": self.training_steps}
