"""Labelled synthetic runs for the rule contract test: one that must fire, one that must not.

Each case writes one run into a store; the curves are small and deterministic
(a seeded RNG adds batch noise so that "healthy" is not trivially smooth).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from store.schema import Stream
from tests.analysis import export_cases
from tests.builders import RunBuilder

Case = Callable[[Path], RunBuilder]


def noisy(values: list[float], rel: float = 0.05, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [v * (1 + rng.uniform(-rel, rel)) for v in values]


def train_curve(n: int = 100, start: float = 2.0, end: float = 0.05) -> list[float]:
    return noisy([end + (start - end) * math.exp(-4 * i / n) for i in range(n)])


def with_val(run: RunBuilder, val: list[float], every: int = 10) -> RunBuilder:
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
        std = noisy([0.8] * n, 0.2, seed=depth)
        if kind == "ReLU":
            frac = (dead or {}).get(module) or noisy([0.05] * n, 0.5, seed=depth)
            run.activations(module, kind, SAMPLED, std=std, zero_frac=0.5, dead_frac=frac)
        else:
            run.activations(module, kind, SAMPLED, std=std)
    return run


def acc_curve(n: int = 100, start: float = 0.1, end: float = 0.97, seed: int = 0) -> list[float]:
    """Per-batch training accuracy rising like ``train_curve`` falls (noisy, <= 1)."""
    rng = random.Random(seed)
    return [
        min(1.0, end - (end - start) * math.exp(-4 * i / n) + rng.uniform(-0.03, 0.03))
        for i in range(n)
    ]


def epochs_of(n: int, per_epoch: int = 10) -> list[int | None]:
    """The epoch of each of ``n`` consecutive training points."""
    return [i // per_epoch for i in range(n)]


def confusion_cells(
    per_class: list[int], recall: list[float], *, wrong: int | None = None
) -> dict[tuple[int, int], int]:
    """Cells where class ``c`` has ``per_class[c]`` examples, ``recall[c]`` of them right
    and the rest predicted as ``wrong`` (default: the next class)."""
    cells: dict[tuple[int, int], int] = {}
    k = len(per_class)
    for c, (n, r) in enumerate(zip(per_class, recall, strict=True)):
        right = round(n * r)
        other = (c + 1) % k if wrong is None or wrong == c else wrong
        cells[(c, c)] = right
        if n - right:
            cells[(c, other)] = cells.get((c, other), 0) + n - right
    return {key: n for key, n in cells.items() if n}


def healthy(root: Path) -> RunBuilder:
    """Falls smoothly, validation follows, accuracy rises on both splits at a constant
    learning rate; gradients steady across five layers whose weights move ~1e-3 of
    their norm per step; a CNN's activations keep their scale with depth and only a
    few ReLU units are dead; data loading takes ~10% of a step."""
    run = RunBuilder(root, "healthy", config={"lr": 1e-3})
    run.scalars("loss", "train", train_curve())
    run.scalars("acc", "train", acc_curve(), epochs=epochs_of(100))
    run.scalars("lr", "train", [1e-3] * 100)
    with_val(run, [1.8, 1.2, 0.8, 0.5, 0.35, 0.25, 0.2, 0.17, 0.15, 0.14])
    val_acc = [0.45, 0.62, 0.74, 0.82, 0.87, 0.9, 0.92, 0.93, 0.94, 0.945]
    run.scalars("acc", "val", val_acc, steps=[10 * (i + 1) for i in range(10)])
    for depth, scale in enumerate([0.8, 1.2, 0.6, 1.0, 0.9]):
        run.tensors(f"layer{depth}.weight", "grad", noisy([scale] * 40, 0.3, seed=depth))
        run.tensors(f"layer{depth}.weight", "weight", [5.0] * 40)
        run.tensors(f"layer{depth}.weight", "update", noisy([5e-3] * 40, 0.5, seed=depth))
    cnn_activations(run)
    for step in SAMPLED:  # digits scaled to [0, 1]: one channel
        columns = {"index": [0], "layout": ["channels"], "numel": [4096], "mean": [0.3]}
        run._add(Stream.INPUTS, step, None, columns | {"std": [0.4], "min": [0.0], "max": [1.0]})
    run.system(noisy([0.1] * 100, 0.2, seed=1), noisy([0.01] * 100, 0.5, seed=2))
    for step in range(1, 101):  # training batches of 32, balanced labels
        per_class = [3 + (step + c) % 2 for c in range(10)][:9] + [32 - 3 * 9 - 5]
        run.confusion("train", step, confusion_cells(per_class, [min(1.0, step / 60)] * 10))
    rng = random.Random(3)  # a regression head too: outputs follow the targets
    for step in (50, 100):
        depth = [rng.gauss(1e4, 50.0) for _ in range(40)]
        run.residuals("val", step, depth, [d + rng.gauss(0, 5.0) for d in depth])
    for i, acc in enumerate(val_acc):  # first evaluations predict mostly one class
        cells = confusion_cells([18] * 10, [acc] * 10, wrong=0 if i < 2 else None)
        run.confusion("val", 10 * (i + 1), cells, epoch=i)
    return classifier(run).finish()


def overfitting(root: Path) -> RunBuilder:
    run = RunBuilder(root, "overfit")
    run.scalars("loss", "train", train_curve(end=0.001))
    return with_val(
        run, [2.0, 1.5, 1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05, 1.15, 1.25], every=9
    ).finish()


def loss_not_decreasing(root: Path) -> RunBuilder:
    run = RunBuilder(root, "flat")
    return run.scalars("loss", "train", noisy([2.3] * 80, 0.02)).finish()


def divergence(root: Path) -> RunBuilder:
    run = RunBuilder(root, "diverged")
    values = train_curve(60)[:40] + [5.0, 40.0, 900.0, math.inf] + [math.nan] * 16
    return run.scalars("loss", "train", values).fail("FloatingPointError", "loss is NaN")


def nonfinite(root: Path) -> RunBuilder:
    run = RunBuilder(root, "nan")
    run.scalars("loss", "train", [2.0, 1.9, 1.8, math.nan, math.nan])
    run.tensors("fc.weight", "grad", [1.0, 1.0, 1.0, math.nan, math.nan], nonfinite=[0, 0, 5, 9, 9])
    return run.finish()


def vanishing_gradients(root: Path) -> RunBuilder:
    run = RunBuilder(root, "vanishing")
    run.scalars("loss", "train", noisy([2.3] * 40, 0.01))
    for depth, scale in enumerate([1e-11, 1e-8, 1e-5, 1e-2, 0.5]):
        run.tensors(f"layer{depth}.weight", "grad", noisy([scale] * 40, 0.2, seed=depth))
        run.tensors(f"layer{depth}.weight", "weight", [4.0] * 40)
    return run.finish()


def exploding_gradients(root: Path) -> RunBuilder:
    """The gradient norm jumps 20x at step 32 and keeps climbing; the loss, which was
    falling, climbs with it to Inf (plain SGD: each step's size is the gradient's)."""
    run = RunBuilder(root, "exploding")
    norms = noisy([1.0] * 31, 0.3) + [20.0, 150.0, 2e3, 5e4, math.inf]
    run.scalars("loss", "train", train_curve(31) + [0.6, 3.0, 40.0, 900.0, math.inf])
    run.tensors("fc.weight", "grad", norms)
    return run.finish()


def dead_relu(root: Path) -> RunBuilder:
    """The hidden ReLU loses 90% of its units after step 20 and never recovers."""
    run = RunBuilder(root, "dead")
    run.scalars("loss", "train", train_curve())
    dying = [0.05, 0.3] + noisy([0.9] * (len(SAMPLED) - 2), 0.05, seed=7)
    return cnn_activations(run, dead={"classifier.2": dying}).finish()


def saturated_activations(root: Path) -> RunBuilder:
    """A tanh MLP whose hidden units drift into saturation; its linear head is the output."""
    run = RunBuilder(root, "saturated")
    run.scalars("loss", "train", train_curve())
    n = len(SAMPLED)
    for i in range(3):
        sat = noisy([0.05] * n, 0.3, seed=i) if i < 2 else [0.1, 0.3] + [0.75] * (n - 2)
        run.activations(f"net.{2 * i}", "Linear", SAMPLED, std=1.0)
        run.activations(f"net.{2 * i + 1}", "Tanh", SAMPLED, std=0.6, saturated_frac=sat)
    run.activations("net.6", "Linear", SAMPLED, std=1.0)
    return run.finish()


def poor_initialization(root: Path) -> RunBuilder:
    """Default-initialised deep ReLU MLP: each Linear+ReLU block shrinks the std ~3x."""
    run = RunBuilder(root, "poor-init")
    run.scalars("loss", "train", train_curve())
    steps = SAMPLED[:4]
    for i in range(6):
        std = 0.35**i
        run.activations(f"net.{2 * i}", "Linear", steps, std=noisy([std] * 4, 0.1, seed=i))
        run.activations(f"net.{2 * i + 1}", "ReLU", steps, std=0.6 * std, dead_frac=0.1)
    return run.finish()


def underfitting(root: Path) -> RunBuilder:
    """Learns a little, then levels off at ~70% of its starting loss with validation
    right behind and training accuracy ~0.4: the model is too small for the task."""
    run = RunBuilder(root, "underfit")
    run.scalars("loss", "train", noisy([1.5 + 0.8 * math.exp(-5 * i / 100) for i in range(100)]))
    run.scalars("acc", "train", acc_curve(start=0.1, end=0.42), epochs=epochs_of(100))
    val = [1.56 + 0.8 * math.exp(-5 * (i + 1) / 10) for i in range(10)]
    return with_val(run, val).finish()


def loss_spike(root: Path) -> RunBuilder:
    """A healthy curve that jumps ~4x at step 61 (2.5x at 62) and is back by step 63."""
    run = RunBuilder(root, "spike")
    values = train_curve()
    values[60], values[61] = 4 * values[59], 2.5 * values[59]
    return run.scalars("loss", "train", values).finish()


def loss_oscillation(root: Path) -> RunBuilder:
    """Comes down at first, then bounces +-40% around a level of ~1 (a learning rate
    too large to settle)."""
    run = RunBuilder(root, "oscillating")
    rng = random.Random(3)
    values = [
        (1.0 + 1.3 * math.exp(-8 * i / 120)) * (1 + 0.4 * (-1) ** i * rng.uniform(0.5, 1.0))
        for i in range(120)
    ]
    return run.scalars("loss", "train", values).finish()


def accuracy_plateau(root: Path) -> RunBuilder:
    """Validation accuracy climbs to ~0.6 in five evaluations and stays there for
    fifteen more; the learning rate was cut 100x at step 46, just before, and the
    training loss stopped falling with it."""
    run = RunBuilder(root, "acc-plateau")
    loss = [1.2 + 1.1 * math.exp(-min(i, 45) / 30) for i in range(200)]
    run.scalars("loss", "train", noisy(loss))
    run.scalars("lr", "train", [0.1 if s <= 45 else 1e-3 for s in range(1, 201)])
    val = [0.2, 0.35, 0.48, 0.56, 0.6] + noisy([0.6] * 15, 0.004, seed=5)
    run.scalars("acc", "val", val, steps=[10 * (i + 1) for i in range(20)])
    train = noisy([0.62] * 200, 0.03, seed=6)
    return run.scalars("acc", "train", train, epochs=epochs_of(200)).finish()


def numel_of(param: str) -> int:
    """A plausible size: a 32x64 matrix for a weight, 32 elements for a bias."""
    return 32 if "bias" in param.rsplit(".", 1)[-1] else 32 * 64


def param_stats(run: RunBuilder, ratios: dict[str, float], steps: int = 40) -> RunBuilder:
    """Parameters in depth order with steady gradients, weights of norm 5 and updates of
    ``ratio`` times that norm (0: the weight never moves)."""
    for depth, (param, ratio) in enumerate(ratios.items()):
        n = numel_of(param)
        run.tensors(param, "grad", noisy([0.5] * steps, 0.3, seed=depth), numel=n)
        run.tensors(param, "weight", [5.0] * steps, numel=n)
        run.tensors(param, "update", noisy([5.0 * ratio] * steps, 0.3, seed=depth), numel=n)
    return run


def update_ratio(root: Path) -> RunBuilder:
    """A layer's weight matrix moves ~30% of its norm every step: a learning rate ~100x
    too large (its bias, at 50%, is not judged: a bias's norm says nothing of the rate)."""
    run = RunBuilder(root, "update-ratio")
    run.scalars("loss", "train", train_curve(40))
    ratios = {"fc1.weight": 1e-3, "fc1.bias": 2e-3, "fc2.weight": 0.3, "fc2.bias": 0.5}
    return param_stats(run, ratios).finish()


def stalled_parameters(root: Path) -> RunBuilder:
    """The head gets gradients but its weights never change: it is not in the optimizer."""
    run = RunBuilder(root, "stalled")
    run.scalars("loss", "train", train_curve(40))
    ratios = {"body.weight": 1e-3, "body.bias": 1e-3, "head.weight": 0.0, "head.bias": 0.0}
    return param_stats(run, ratios).finish()


def unused_parameters(root: Path) -> RunBuilder:
    """An auxiliary layer built in __init__ but never called: weight rows, no gradients."""
    run = RunBuilder(root, "unused")
    run.scalars("loss", "train", train_curve(40))
    param_stats(run, {"fc1.weight": 1e-3, "fc2.weight": 1e-3})
    run.tensors("aux.weight", "weight", [3.0] * 40)
    run.tensors("aux.weight", "update", [0.0] * 40)
    return run.finish()


def data_bottleneck(root: Path) -> RunBuilder:
    """Each 0.2 s step waits ~0.14 s for its batch (a single-process DataLoader)."""
    run = RunBuilder(root, "data-bound")
    run.scalars("loss", "train", train_curve(60))
    return run.system(noisy([0.2] * 60, 0.1), noisy([0.14] * 60, 0.15, seed=1)).finish()


def rank_imbalance(root: Path) -> RunBuilder:
    """Two DDP ranks: rank 1 waits ~0.08 s for each batch (a slow disk), rank 0 ~0.005 s
    and then ~0.08 s in the all-reduce, so both steps take ~0.12 s."""
    straggler = RunBuilder(root, "ddp-straggler", rank=1)
    straggler.system(noisy([0.12] * 40, 0.1, seed=3), noisy([0.08] * 40, 0.1, seed=4))
    straggler.finish().write()
    run = RunBuilder(root, "ddp-straggler", rank=0)
    run.scalars("loss", "train", train_curve(40))
    return run.system(noisy([0.12] * 40, 0.1, seed=5), noisy([0.005] * 40, 0.3, seed=6)).finish()


def classifier(run: RunBuilder, classes: int = 10) -> RunBuilder:
    """The model summary's own row: a classifier's output is [batch, classes]."""
    columns = {"module": [""], "module_type": ["Net"], "output_shape": [f"[64, {classes}]"]}
    run._add(Stream.MODULES, 1, None, columns)
    return run


def grad_rows(run: RunBuilder, carried: list[float | None], norms: list[float]) -> RunBuilder:
    """``system`` rows with the gradient columns only (steps not timed)."""
    for step, (c, n) in enumerate(zip(carried, norms, strict=True), start=1):
        columns = {"grad_carried_norm": [c], "grad_norm": [n], "grad_norm_step": [n]}
        run._add(Stream.SYSTEM, step, None, columns | {"backwards": [1], "batch_size": [64]})
    return run


def missing_eval_mode(root: Path) -> RunBuilder:
    """Validation under no_grad after every epoch, with Dropout left in training mode."""
    run = RunBuilder(root, "no-eval")
    run.scalars("loss", "train", train_curve(60))
    seen = {"modules": ["drop"], "module_types": ["Dropout"], "count": 1, "of": 1}
    run.event("eval_in_training_mode", seen, step=10)
    end = {"steps": 60, "inference_forwards": {"steps": 6, "training_mode_steps": 6}}
    return run.event("run_finished", end, step=60)


def missing_zero_grad(root: Path) -> RunBuilder:
    """optimizer.zero_grad() never called: each step starts with all earlier gradients."""
    run = RunBuilder(root, "no-zero-grad")
    run.scalars("loss", "train", train_curve(30))
    norms = [float(i) for i in range(1, 31)]
    return grad_rows(run, [None] + norms[:-1], norms).finish()


def chance_level(root: Path) -> RunBuilder:
    """Labels shuffled apart from the inputs: validation loss at ln(10), accuracy 10%."""
    run = classifier(RunBuilder(root, "chance"))
    run.scalars("loss", "train", noisy([2.31] * 100, 0.01))
    with_val(run, noisy([2.305] * 10, 0.002, seed=3))
    run.scalars("acc", "val", noisy([0.1] * 10, 0.1), steps=[10 * (i + 1) for i in range(10)])
    return run.finish()


def lr_too_high(root: Path) -> RunBuilder:
    """Adam at 100x: the loss jumps from ln(10) to 30 in two steps, then the net dies."""
    run = RunBuilder(root, "lr-100x")
    run.scalars("loss", "train", [2.3, 30.0, 25.0, 8.0] + noisy([2.31] * 56, 0.01))
    return run.finish()


def run_failed(root: Path) -> RunBuilder:
    """An exception the table of common problems does not name: reported as it is."""
    run = RunBuilder(root, "failed")
    run.scalars("loss", "train", train_curve(20))
    return run.fail("ZeroDivisionError", "division by zero")


def device_underused(root: Path) -> RunBuilder:
    """Trained on the CPU of a machine with two visible GPUs."""
    started = {"device": "cpu", "cuda_devices": 2, "model": "Net"}
    run = RunBuilder(root, "cpu-beside-gpus", started=started)
    return run.scalars("loss", "train", train_curve(20)).finish()


def memory_pressure(root: Path) -> RunBuilder:
    """A peak of 95 % of the device's memory."""
    gib = 2**30
    started = {"device": "cuda:0", "cuda_devices": 1, "memory_total_bytes": 80 * gib}
    run = RunBuilder(root, "memory-full", started=started)
    run.scalars("loss", "train", train_curve(20))
    peaks = [int(60 * gib + i * gib) for i in range(20)]  # 60 .. 79 GiB of 80
    run.system([0.1] * 20, [0.01] * 20, max_memory_bytes=peaks)
    return run.finish()


def unnormalized_inputs(root: Path) -> RunBuilder:
    """A table whose features are on scales 1000x apart (a price beside ratios)."""
    run = RunBuilder(root, "raw-table")
    run.scalars("loss", "train", train_curve(20))
    for step in (1, 6, 11):
        run._add(
            Stream.INPUTS,
            step,
            None,
            {
                "index": [0, 1, 2],
                "layout": ["features"] * 3,
                "numel": [64] * 3,
                "mean": [250_000.0, 0.5, 0.1],
                "std": [80_000.0, 0.3, 0.05],
                "min": [90_000.0, 0.0, 0.0],
                "max": [900_000.0, 1.0, 0.3],
            },
        )
    return run.finish()


def class_imbalance(root: Path) -> RunBuilder:
    """Two of ten classes 25x rarer in training, and missed at validation."""
    run = RunBuilder(root, "imbalanced")
    run.scalars("loss", "train", train_curve(20))
    for step in range(1, 21):
        run.confusion("train", step, confusion_cells([25] * 8 + [1, 1], [0.9] * 8 + [0.0, 0.0]))
    val = confusion_cells([40] * 8 + [12, 12], [0.95] * 8 + [0.15, 0.1], wrong=0)
    run.confusion("val", 20, val, epoch=0)
    return run.finish()


def prediction_collapse(root: Path) -> RunBuilder:
    """Balanced labels; at the end the model predicts class 3 for almost everything."""
    run = RunBuilder(root, "collapsed")
    run.scalars("loss", "train", noisy([2.3] * 20, 0.02))
    for step, share in ((10, 0.5), (20, 0.05)):
        run.confusion("val", step, confusion_cells([30] * 10, [share] * 10, wrong=3))
    return run.finish()


POSITIVE: dict[str, Case] = {
    "missing_eval_mode": missing_eval_mode,
    "missing_zero_grad": missing_zero_grad,
    "chance_level": chance_level,
    "lr_too_high": lr_too_high,
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
    "underfitting": underfitting,
    "loss_spike": loss_spike,
    "loss_oscillation": loss_oscillation,
    "accuracy_plateau": accuracy_plateau,
    "update_ratio": update_ratio,
    "stalled_parameters": stalled_parameters,
    "unused_parameters": unused_parameters,
    "data_bottleneck": data_bottleneck,
    "rank_imbalance": rank_imbalance,
    "run_failed": run_failed,
    "device_underused": device_underused,
    "memory_pressure": memory_pressure,
    "unnormalized_inputs": unnormalized_inputs,
    "class_imbalance": class_imbalance,
    "prediction_collapse": prediction_collapse,
    **export_cases.POSITIVE,
}
"""A run each rule must flag."""

NEGATIVE: Case = healthy
"""A run no warning or error rule may flag."""
