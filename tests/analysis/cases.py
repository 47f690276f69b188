"""Labelled synthetic runs for the rule contract test: one that must fire, one that must not.

Each case writes one run into a store; the curves are small and deterministic
(a seeded RNG adds batch noise so that "healthy" is not trivially smooth).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from tests.builders import RunBuilder

Case = Callable[[Path], RunBuilder]


def _noisy(values: list[float], rel: float = 0.05, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [v * (1 + rng.uniform(-rel, rel)) for v in values]


def _train_curve(n: int = 100, start: float = 2.0, end: float = 0.05) -> list[float]:
    return _noisy([end + (start - end) * math.exp(-4 * i / n) for i in range(n)])


def _with_val(run: RunBuilder, val: list[float], every: int = 10) -> RunBuilder:
    steps = [every * (i + 1) for i in range(len(val))]
    return run.scalars("loss", "val", val, steps=steps, epochs=list(range(len(val))))


SAMPLED = list(range(1, 100, 10))
"""Steps with activation statistics (``activations_every=10`` over 100 steps)."""


def cnn_activations(run: RunBuilder, dead: dict[str, list[float]] | None = None) -> RunBuilder:
    """A small CNN's leaves in forward order, std roughly constant with depth.

    ``dead`` overrides the dead-unit fraction of a ReLU by name (default ~0.05).
    """
    layers = [
        ("features.0", "Conv2d"),
        ("features.1", "ReLU"),
        ("features.2", "Conv2d"),
        ("features.3", "ReLU"),
        ("features.4", "MaxPool2d"),
        ("classifier.0", "Flatten"),
        ("classifier.1", "Linear"),
        ("classifier.2", "ReLU"),
        ("classifier.3", "Linear"),
    ]
    n = len(SAMPLED)
    for depth, (module, kind) in enumerate(layers):
        std = _noisy([0.8] * n, 0.2, seed=depth)
        if kind == "ReLU":
            frac = (dead or {}).get(module) or _noisy([0.05] * n, 0.5, seed=depth)
            run.activations(module, kind, SAMPLED, std=std, zero_frac=0.5, dead_frac=frac)
        else:
            run.activations(module, kind, SAMPLED, std=std)
    return run


def healthy(root: Path) -> RunBuilder:
    """Falls smoothly, validation follows; gradients steady across five layers; a CNN's
    activations keep their scale with depth and only a few ReLU units are dead."""
    run = RunBuilder(root, "healthy", config={"lr": 1e-3})
    run.scalars("loss", "train", _train_curve())
    _with_val(run, [1.8, 1.2, 0.8, 0.5, 0.35, 0.25, 0.2, 0.17, 0.15, 0.14])
    for depth, scale in enumerate([0.8, 1.2, 0.6, 1.0, 0.9]):
        run.tensors(f"layer{depth}.weight", "grad", _noisy([scale] * 40, 0.3, seed=depth))
        run.tensors(f"layer{depth}.weight", "weight", [5.0] * 40)
    cnn_activations(run)
    return run.finish()


def overfitting(root: Path) -> RunBuilder:
    run = RunBuilder(root, "overfit")
    run.scalars("loss", "train", _train_curve(end=0.001))
    return _with_val(
        run, [2.0, 1.5, 1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05, 1.15, 1.25], every=9
    ).finish()


def loss_not_decreasing(root: Path) -> RunBuilder:
    run = RunBuilder(root, "flat")
    return run.scalars("loss", "train", _noisy([2.3] * 80, 0.02)).finish()


def divergence(root: Path) -> RunBuilder:
    run = RunBuilder(root, "diverged")
    values = _train_curve(60)[:40] + [5.0, 40.0, 900.0, math.inf] + [math.nan] * 16
    return run.scalars("loss", "train", values).fail("FloatingPointError", "loss is NaN")


def nonfinite(root: Path) -> RunBuilder:
    run = RunBuilder(root, "nan")
    run.scalars("loss", "train", [2.0, 1.9, 1.8, math.nan, math.nan])
    run.tensors("fc.weight", "grad", [1.0, 1.0, 1.0, math.nan, math.nan], nonfinite=[0, 0, 5, 9, 9])
    return run.finish()


def vanishing_gradients(root: Path) -> RunBuilder:
    run = RunBuilder(root, "vanishing")
    run.scalars("loss", "train", _noisy([2.3] * 40, 0.01))
    for depth, scale in enumerate([1e-11, 1e-8, 1e-5, 1e-2, 0.5]):
        run.tensors(f"layer{depth}.weight", "grad", _noisy([scale] * 40, 0.2, seed=depth))
        run.tensors(f"layer{depth}.weight", "weight", [4.0] * 40)
    return run.finish()


def exploding_gradients(root: Path) -> RunBuilder:
    run = RunBuilder(root, "exploding")
    norms = _noisy([1.0] * 30, 0.3) + [3.0, 20.0, 150.0, 2e3, 5e4, math.inf]
    run.scalars("loss", "train", _train_curve(36))
    run.tensors("fc.weight", "grad", norms)
    return run.finish()


def dead_relu(root: Path) -> RunBuilder:
    """The hidden ReLU loses 70% of its units after step 20 and never recovers."""
    run = RunBuilder(root, "dead")
    run.scalars("loss", "train", _train_curve())
    dying = [0.05, 0.3] + _noisy([0.7] * (len(SAMPLED) - 2), 0.05, seed=7)
    return cnn_activations(run, dead={"classifier.2": dying}).finish()


def saturated_activations(root: Path) -> RunBuilder:
    """A tanh MLP whose hidden units drift into saturation; its linear head is the output."""
    run = RunBuilder(root, "saturated")
    run.scalars("loss", "train", _train_curve())
    n = len(SAMPLED)
    for i in range(3):
        sat = _noisy([0.05] * n, 0.3, seed=i) if i < 2 else [0.1, 0.3] + [0.75] * (n - 2)
        run.activations(f"net.{2 * i}", "Linear", SAMPLED, std=1.0)
        run.activations(f"net.{2 * i + 1}", "Tanh", SAMPLED, std=0.6, saturated_frac=sat)
    run.activations("net.6", "Linear", SAMPLED, std=1.0)
    return run.finish()


def poor_initialization(root: Path) -> RunBuilder:
    """Default-initialised deep ReLU MLP: each Linear+ReLU block shrinks the std ~3x."""
    run = RunBuilder(root, "poor-init")
    run.scalars("loss", "train", _train_curve())
    steps = SAMPLED[:4]
    for i in range(6):
        std = 0.35**i
        run.activations(f"net.{2 * i}", "Linear", steps, std=_noisy([std] * 4, 0.1, seed=i))
        run.activations(f"net.{2 * i + 1}", "ReLU", steps, std=0.6 * std, dead_frac=0.1)
    return run.finish()


POSITIVE: dict[str, Case] = {
    "overfitting": overfitting,
    "early_stopping": overfitting,
    "loss_not_decreasing": loss_not_decreasing,
    "divergence": divergence,
    "nonfinite": nonfinite,
    "vanishing_gradients": vanishing_gradients,
    "exploding_gradients": exploding_gradients,
    "dead_relu": dead_relu,
    "saturated_activations": saturated_activations,
    "poor_initialization": poor_initialization,
}
"""A run each rule must flag."""

NEGATIVE: Case = healthy
"""A run no warning or error rule may flag."""
