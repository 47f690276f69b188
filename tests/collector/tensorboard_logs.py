"""Training curves as TensorBoard users tag them, for the drop-in and the importer alike."""

from __future__ import annotations

import math

from tests.analysis.cases import noisy


def accuracy_plateau() -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of ``tests.analysis.cases.accuracy_plateau`` under the tags a
    TensorBoard user writes (``Accuracy/val``, ``Loss/train``, ``learning_rate``), in step
    order: validation accuracy climbs to ~0.6 in five evaluations and stays there for
    fifteen more, after the learning rate was cut 100x at step 46."""
    loss = noisy([1.2 + 1.1 * math.exp(-min(i, 45) / 30) for i in range(200)])
    train = noisy([0.62] * 200, 0.03, seed=6)
    val = [0.2, 0.35, 0.48, 0.56, 0.6] + noisy([0.6] * 15, 0.004, seed=5)
    points = []
    for i, step in enumerate(range(1, 201)):
        points += [
            ("Loss/train", loss[i], step),
            ("learning_rate", 0.1 if step <= 45 else 1e-3, step),
            ("Accuracy/train", train[i], step),
        ]
        if step % 10 == 0:
            points.append(("Accuracy/val", val[step // 10 - 1], step))
    return points
