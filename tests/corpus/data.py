"""The corpus's data: only what is bundled with scikit-learn or Python, or made here.

Every task is a fixed, seeded 80/20 split with inputs standardised on the training part,
cached for the session (callers that perturb a tensor clone it first). ``classes`` is
None for a regression: its runs log no accuracy, only the loss.
"""

from __future__ import annotations

import functools
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

from telemetry.demo import load_digits_tensors


@dataclass(frozen=True)
class Task:
    name: str
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int | None  # None: a regression (mean squared error, no accuracy)

    def subset(self, n: int) -> Task:
        """The first ``n`` training examples (the split is already shuffled)."""
        return Task(self.name, self.x[:n], self.y[:n], self.x_val, self.y_val, self.classes)


def _split(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, ...]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _standardised(x: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return (x - mean) / std, (x_val - mean) / std


@functools.cache
def digits() -> Task:
    """scikit-learn's 8x8 digits (1437 train, 360 val), pixels in [0, 1], N x 1 x 8 x 8."""
    return Task("digits", *load_digits_tensors(), classes=10)


def _long_tail(x: torch.Tensor, y: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``ratio ** (k / (C - 1))`` of class k's examples (the rest dropped)."""
    classes = int(y.max()) + 1
    keep = torch.zeros(len(y), dtype=torch.bool)
    for k in range(classes):
        where = torch.nonzero(y == k).flatten()
        keep[where[: math.ceil(len(where) * ratio ** (k / (classes - 1)))]] = True
    return x[keep], y[keep]


@functools.cache
def digits_long_tail(ratio: float = 0.1) -> Task:
    """The digits with a long-tailed class distribution, as in CIFAR-10-LT: class k keeps
    ``ratio ** (k / 9)`` of its examples, digit 9 a tenth of digit 0's (602 train, 143
    val, the validation set as imbalanced as the training set)."""
    d = digits()
    x, y = _long_tail(d.x, d.y, ratio)
    x_val, y_val = _long_tail(d.x_val, d.y_val, ratio)
    return Task("digits_long_tail", x, y, x_val, y_val, classes=10)


def shuffled_labels(task: Task, seed: int = 1) -> Task:
    """``task`` with its label arrays permuted apart from the inputs (the training labels
    and the validation labels each by its own seeded permutation): a dataset whose
    label column was shuffled separately. The classes keep their frequencies; nothing
    about the inputs predicts the label."""
    gen = torch.Generator().manual_seed(seed)
    y = task.y[torch.randperm(len(task.y), generator=gen)]
    y_val = task.y_val[torch.randperm(len(task.y_val), generator=gen)]
    return Task(task.name, task.x, y, task.x_val, y_val, task.classes)


@functools.cache
def digit_rows() -> Task:
    """The digits as sequences: 8 time steps (rows) of 8 pixels, for the GRU/LSTM and the
    transformer."""
    d = digits()
    return Task("digit_rows", d.x[:, 0], d.y, d.x_val[:, 0], d.y_val, classes=10)


@functools.cache
def tabular(name: str) -> Task:
    """``breast_cancer``, ``wine``, ``iris`` (classification) or ``diabetes`` (regression,
    the target standardised too): scikit-learn's bundled tables."""
    from sklearn import datasets  # ~0.5 s import, like the demo's

    bunch = getattr(datasets, f"load_{name}")()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    if name == "diabetes":
        y = torch.tensor(bunch.target, dtype=torch.float32)
        x, y, x_val, y_val = _split(x, y)
        mean, std = y.mean(), y.std()
        x, x_val = _standardised(x, x_val)
        return Task(name, x, (y - mean) / std, x_val, (y_val - mean) / std, classes=None)
    y = torch.tensor(bunch.target, dtype=torch.long)
    x, y, x_val, y_val = _split(x, y)
    x, x_val = _standardised(x, x_val)
    return Task(name, x, y, x_val, y_val, classes=int(y.max()) + 1)


@functools.cache
def waves(n: int = 1200, features: int = 8, seed: int = 0) -> Task:
    """A synthetic regression: y = sin(x0) + x1 * x2 + 0.5 x3^2 - 1 + noise (std 0.1), x
    standard normal; the other features are distractors. The noise floor is ~1% of the
    target's variance: a fitted model reaches R^2 > 0.9."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = torch.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - 1.0
    y = y + 0.1 * torch.randn(n, generator=gen)
    x, y, x_val, y_val = _split(x, y, seed)
    mean, std = y.mean(), y.std()
    return Task("waves", x, (y - mean) / std, x_val, (y_val - mean) / std, classes=None)


@functools.cache
def sines(n: int = 800, length: int = 24, seed: int = 0) -> Task:
    """A sequence regression: noisy sine waves of random frequency and phase (N x T x 1);
    the target is the clean value one step after the end."""
    gen = torch.Generator().manual_seed(seed)
    freq = 0.2 + 0.6 * torch.rand(n, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
    t = torch.arange(length + 1, dtype=torch.float32)
    clean = torch.sin(freq * t + phase)
    x = (clean[:, :length] + 0.1 * torch.randn(n, length, generator=gen)).unsqueeze(-1)
    x, y, x_val, y_val = _split(x, clean[:, length], seed)
    return Task("sines", x, y, x_val, y_val, classes=None)


TEXT_SOURCE = Path(textwrap.__file__)  # ~20k characters of the standard library's Python


@functools.cache
def text(context: int = 32, stride: int = 16) -> Task:
    """Character-level language modelling on ``TEXT_SOURCE``: windows of ``context``
    characters (ids, N x T), each position's target the next character (N x T). The
    last 20% of the file is the validation text (no window straddles the cut)."""
    chars = TEXT_SOURCE.read_text(encoding="utf-8")
    vocab = {c: i for i, c in enumerate(sorted(set(chars)))}
    ids = torch.tensor([vocab[c] for c in chars], dtype=torch.long)
    cut = int(0.8 * len(ids))

    def windows(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = range(0, len(part) - context - 1, stride)
        seqs = torch.stack([part[s : s + context + 1] for s in starts])
        return seqs[:, :-1], seqs[:, 1:]

    x, y = windows(ids[:cut])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x_val, y_val = windows(ids[cut:])
    return Task("text", x[order], y[order], x_val, y_val, classes=len(vocab))
