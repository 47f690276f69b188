"""The healthy corpus: trainings a competent practitioner would be happy with.

Varied on purpose, so that a rule tuned on one family meets the others: MLPs, CNNs with
BatchNorm, residual nets, GRUs and LSTMs, small pre- and post-norm transformers, frozen
backbones with a trained head, linear models; SGD, momentum, Nesterov, Adam, AdamW,
RMSprop, Adagrad; batches of 4 to 512 with short last batches; constant, step, cosine,
one-cycle, cyclic and warm-up schedules; dropout, weight decay, label smoothing, clipping,
gradient accumulation, bf16 autocast; classification (balanced and long-tailed) and
regression; validation every epoch or every N steps, training metrics per step or per
epoch only. And the legitimate twins of the classic mistakes, which a rule naming a
mistake must leave alone: gradients accumulated on purpose (``zero_grad`` every 4th
micro-batch, zeroed in place), ``zero_grad()`` called between the forward and the
backward, dropout and BatchNorm with ``model.eval()`` around validation, a learning rate
10x the usual one made safe by a warm-up, and short last batches of 1 or 2 rows.

Each run checks its own health (``_healthy``): the validation metric reaches the task's
bar, the training loss fell, the validation loss ends near its best, every loss is
finite. A run that stops being healthy fails its claims loudly; it is never silently
counted as a false alarm.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from telemetry.demo import SmallCNN
from tests.corpus import data, models
from tests.corpus.data import Task
from tests.corpus.loop import CorpusTrace, train
from tests.corpus.registry import healthy
from tests.scenarios import probes
from tests.scenarios.catalogue import Truth
from tests.scenarios.harness import batchnorm_cnn, he_init, mlp

# The validation accuracy (classification) or R^2 (regression) a healthy run reaches.
BAR = {
    "digits": 0.9,
    "digits_long_tail": 0.9,
    "digit_rows": 0.9,
    "breast_cancer": 0.93,
    "wine": 0.9,
    "iris": 0.9,
    "text": 0.35,  # next-character accuracy after a few epochs on ~16k characters
    "diabetes": 0.4,  # the linear model's R^2 on this table is ~0.45-0.5
    "waves": 0.85,
    "sines": 0.9,
}


def _healthy(
    trace: CorpusTrace, task: Task, *, max_loss_left: float = 0.5, val_slack: float = 0.1
) -> Truth:
    """A healthy run reaches its task's bar, removed most of its training loss
    (``max_loss_left``: the last tenth's median over the first five steps' median) and
    ends within ``val_slack`` of its best validation loss."""
    loss = trace.train_loss
    tail = probes.median(loss[-max(5, len(loss) // 10) :])
    metric = trace.val_acc[-1] if task.classes is not None else trace.val_r2[-1]
    best = min(trace.val_loss)
    numbers = {
        "steps": trace.steps,
        "val_metric": metric,
        "train_loss_first5": probes.median(loss[:5]),
        "train_loss_last_tenth": tail,
        "val_loss_best": best,
        "val_loss_last": trace.val_loss[-1],
    }
    what = "accuracy" if task.classes is not None else "R^2"
    claims = {
        f"validation {what} >= {BAR[task.name]}": metric >= BAR[task.name],
        f"training loss fell to <= {max_loss_left:.0%} of its start": tail
        <= max_loss_left * numbers["train_loss_first5"],
        f"validation loss ends within {val_slack:.0%} of its best": trace.val_loss[-1]
        <= (1 + val_slack) * best,
        "every loss finite": all(map(math.isfinite, loss + trace.val_loss)),
    }
    return Truth(trace.run_id, numbers, claims)


def _fit(root: Path, name: str, model: nn.Module, opt: Any, task: Task, **kw: Any) -> Truth:
    check = {k: kw.pop(k) for k in ("max_loss_left", "val_slack") if k in kw}
    return _healthy(train(root, name, model, opt, task, **kw), task, **check)


def steps_per_epoch(task: Task, batch_size: int, accumulate: int = 1) -> int:
    return math.ceil(math.ceil(len(task.x) / batch_size) / accumulate)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int) -> Any:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def dropout_mlp(widths: tuple[int, ...], p: float, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), act(), nn.Dropout(p)]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return he_init(nn.Sequential(*layers))


def pretrain(model: nn.Module, task: Task, *, epochs: int, lr: float = 1e-3) -> None:
    """A backbone's earlier life, without the collector: plain Adam on ``task``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(task.x), generator=gen)
        for i in range(0, len(task.x), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(task.x[idx]), task.y[idx]).backward()
            opt.step()


def _first_classes(task: Task, k: int) -> Task:
    keep, keep_val = task.y < k, task.y_val < k
    return Task(
        task.name, task.x[keep], task.y[keep], task.x_val[keep_val], task.y_val[keep_val], k
    )


# -- MLPs ----------------------------------------------------------------------------------


@healthy(
    "mlp.sgd_constant_b32",
    what="ReLU MLP 64-128-128-10, plain SGD 0.05",
    arch="MLP",
    optimizer="SGD",
    schedule="constant",
    task="digits",
    batch="32",
)
def mlp_sgd_constant(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return _fit(root, "mlp.sgd_constant_b32", model, opt, data.digits(), epochs=5, batch_size=32)


@healthy(
    "mlp.momentum_step_b64",
    what="ReLU MLP, SGD 0.05 + momentum 0.9, StepLR x0.3 every 3 epochs",
    arch="MLP",
    optimizer="SGD momentum",
    schedule="step",
    task="digits",
    batch="64",
)
def mlp_momentum_step(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.3)
    return _fit(root, "mlp.momentum_step_b64", model, opt, data.digits(), epochs=8, scheduler=sched)


@healthy(
    "mlp.nesterov_b8",
    what="ReLU MLP, Nesterov SGD 0.01 on batches of 8, validation every 60 steps",
    arch="MLP",
    optimizer="SGD Nesterov",
    schedule="constant",
    task="digits",
    batch="8 (last 5)",
)
def mlp_nesterov_b8(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    return _fit(
        root, "mlp.nesterov_b8", model, opt, data.digits(), epochs=2, batch_size=8, eval_every=60
    )


@healthy(
    "mlp.adam_cosine_dropout_b128",
    what="ReLU MLP with dropout 0.2, Adam 2e-3, cosine to 0 over 12 epochs",
    arch="MLP",
    optimizer="Adam",
    schedule="cosine",
    task="digits",
    batch="128",
)
def mlp_adam_cosine_dropout(root: Path) -> Truth:
    model = dropout_mlp((64, 128, 128, 10), 0.2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12)
    return _fit(
        root,
        "mlp.adam_cosine_dropout_b128",
        model,
        opt,
        data.digits(),
        epochs=12,
        batch_size=128,
        scheduler=sched,
    )


@healthy(
    "mlp.adamw_onecycle_b256",
    what="ReLU MLP, AdamW (weight decay 0.05), one-cycle to 1e-2 stepped per batch",
    arch="MLP",
    optimizer="AdamW",
    schedule="one-cycle",
    task="digits",
    batch="256 (last 157)",
)
def mlp_adamw_onecycle(root: Path) -> Truth:
    task, epochs = data.digits(), 15
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-2, total_steps=epochs * steps_per_epoch(task, 256)
    )
    return _fit(
        root,
        "mlp.adamw_onecycle_b256",
        model,
        opt,
        task,
        epochs=epochs,
        batch_size=256,
        scheduler=sched,
        schedule_every="step",
    )


@healthy(
    "mlp.rmsprop_b64",
    what="ReLU MLP, RMSprop 1e-3",
    arch="MLP",
    optimizer="RMSprop",
    schedule="constant",
    task="digits",
    batch="64",
)
def mlp_rmsprop(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    return _fit(root, "mlp.rmsprop_b64", model, opt, data.digits(), epochs=6)


@healthy(
    "mlp.adagrad_b32",
    what="ReLU MLP, Adagrad 0.05",
    arch="MLP",
    optimizer="Adagrad",
    schedule="constant",
    task="digits",
    batch="32",
)
def mlp_adagrad(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    return _fit(root, "mlp.adagrad_b32", model, opt, data.digits(), epochs=5, batch_size=32)


@healthy(
    "mlp.gelu_step_b256",
    what="GELU MLP, Adam 3e-3, StepLR x0.1 after 12 of 20 epochs",
    arch="MLP (GELU)",
    optimizer="Adam",
    schedule="step",
    task="digits",
    batch="256 (last 157)",
)
def mlp_gelu_step(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10), activation=nn.GELU))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=12, gamma=0.1)
    return _fit(
        root,
        "mlp.gelu_step_b256",
        model,
        opt,
        data.digits(),
        epochs=20,
        batch_size=256,
        scheduler=sched,
    )


@healthy(
    "mlp.dropout_step_30_epochs_b256",
    what="ReLU MLP with dropout 0.5, Adam 2e-3, StepLR x0.1 after 15 of 30 epochs "
    "(converged at ~94% validation accuracy, then trained out its budget)",
    arch="MLP",
    optimizer="Adam",
    schedule="step",
    task="digits",
    batch="256 (last 157)",
)
def mlp_dropout_step(root: Path) -> Truth:
    model = dropout_mlp((64, 128, 128, 10), 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=15, gamma=0.1)
    return _fit(
        root,
        "mlp.dropout_step_30_epochs_b256",
        model,
        opt,
        data.digits(),
        epochs=30,
        batch_size=256,
        scheduler=sched,
    )


@healthy(
    "mlp.momentum_cyclic_lr_b64",
    what="ReLU MLP, SGD + momentum under a triangular cyclic LR (0.002 to 0.05, 30-step "
    "half cycles) stepped per batch",
    arch="MLP",
    optimizer="SGD momentum",
    schedule="cyclic",
    task="digits",
    batch="64",
)
def mlp_cyclic(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.002, max_lr=0.05, step_size_up=30)
    return _fit(
        root,
        "mlp.momentum_cyclic_lr_b64",
        model,
        opt,
        data.digits(),
        epochs=5,
        scheduler=sched,
        schedule_every="step",
    )


@healthy(
    "mlp.warmup_cosine_b16_sparse_stats",
    what="ReLU MLP, AdamW 2e-3, 50-step warm-up + cosine over 4 epochs of batch 16; the "
    "collector samples parameter statistics every 10th step, activations every 20th",
    arch="MLP",
    optimizer="AdamW",
    schedule="warm-up + cosine",
    task="digits",
    batch="16 (last 13)",
)
def mlp_sparse_stats(root: Path) -> Truth:
    task, epochs = data.digits(), 4
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = warmup_cosine(opt, 50, epochs * steps_per_epoch(task, 16))
    return _fit(
        root,
        "mlp.warmup_cosine_b16_sparse_stats",
        model,
        opt,
        task,
        epochs=epochs,
        batch_size=16,
        scheduler=sched,
        schedule_every="step",
        stats_every=10,
        activations_every=20,
    )


@healthy(
    "mlp.label_smoothing_b64",
    what="ReLU MLP, Adam 1e-3, cross-entropy with label smoothing 0.1",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def mlp_label_smoothing(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(
        root, "mlp.label_smoothing_b64", model, opt, data.digits(), epochs=6, label_smoothing=0.1
    )


@healthy(
    "mlp.sgd_b4_last_batch_1",
    what="ReLU MLP, SGD 0.01 + momentum 0.9 on batches of 4 (the last one 1 row), "
    "validation every 40 steps",
    arch="MLP",
    optimizer="SGD momentum",
    schedule="constant",
    task="digits",
    batch="4 (last 1)",
)
def mlp_b4(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _fit(
        root,
        "mlp.sgd_b4_last_batch_1",
        model,
        opt,
        data.digits(),
        epochs=1,
        batch_size=4,
        eval_every=40,
    )


@healthy(
    "mlp.adam_b512",
    what="ReLU MLP, Adam 3e-3 on batches of 512 (3 steps an epoch, the last 413 rows)",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="512 (last 413)",
)
def mlp_b512(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return _fit(root, "mlp.adam_b512", model, opt, data.digits(), epochs=30, batch_size=512)


@healthy(
    "mlp.batchnorm_b41_last_batch_2",
    what="ReLU MLP with BatchNorm1d, Adam 1e-3 on batches of 41 (the last one 2 rows)",
    arch="MLP + BatchNorm",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="41 (last 2)",
)
def mlp_bn_b41(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10), batchnorm=True))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(
        root,
        "mlp.batchnorm_b41_last_batch_2",
        model,
        opt,
        data.digits(),
        epochs=4,
        batch_size=41,
    )


@healthy(
    "mlp.accumulate4_b16",
    what="ReLU MLP, Adam 1e-3, 4 micro-batches of 16 accumulated per step",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="16 x 4 accumulated",
)
def mlp_accumulate(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(
        root,
        "mlp.accumulate4_b16",
        model,
        opt,
        data.digits(),
        epochs=6,
        batch_size=16,
        accumulate=4,
    )


@healthy(
    "mlp.adam_clip_b64",
    what="ReLU MLP, Adam 2e-3, gradients clipped to norm 1",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def mlp_clip(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    return _fit(root, "mlp.adam_clip_b64", model, opt, data.digits(), epochs=5, clip=1.0)


@healthy(
    "mlp.adam_lr_0.01_warmup_cosine_clip_b64",
    what="ReLU MLP at Adam lr 1e-2 (10x the default) made safe by a 50-step warm-up + "
    "cosine, clipping at norm 1 (active on about half the steps)",
    arch="MLP",
    optimizer="Adam",
    schedule="warm-up + cosine",
    task="digits",
    batch="64",
)
def mlp_high_lr_warmup(root: Path) -> Truth:
    task, epochs = data.digits(), 5
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = warmup_cosine(opt, 50, epochs * steps_per_epoch(task, 64))
    return _fit(
        root,
        "mlp.adam_lr_0.01_warmup_cosine_clip_b64",
        model,
        opt,
        task,
        epochs=epochs,
        scheduler=sched,
        schedule_every="step",
        clip=1.0,
    )


@healthy(
    "mlp.long_tail_digits_adam_b32",
    what="ReLU MLP, Adam 1e-3, on long-tailed digits (digit 9 has a tenth of digit 0's "
    "examples, validation as imbalanced): the rare classes are learned too",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="digits, long-tailed (imbalance 10:1)",
    batch="32 (last 26)",
)
def mlp_long_tail(root: Path) -> Truth:
    task = data.digits_long_tail()
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(root, "mlp.long_tail_digits_adam_b32", model, opt, task, epochs=10, batch_size=32)
    truth = _healthy(trace, task)
    model.eval()
    with torch.no_grad():
        predicted = model(task.x_val).argmax(1)
    recalls = [
        float((predicted[task.y_val == k] == k).float().mean()) for k in range(task.classes or 0)
    ]
    truth.numbers["val_balanced_acc"] = sum(recalls) / len(recalls)
    truth.numbers["val_majority_share"] = float((task.y_val == 0).float().mean())
    truth.claims["balanced validation accuracy (mean recall) >= 0.85"] = (
        truth.numbers["val_balanced_acc"] >= 0.85
    )
    return truth


@healthy(
    "mlp.adamw_bf16_b64",
    what="ReLU MLP, AdamW 1e-3, forward and loss under bf16 autocast",
    arch="MLP",
    optimizer="AdamW",
    schedule="constant",
    task="digits",
    batch="64",
)
def mlp_bf16(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return _fit(root, "mlp.adamw_bf16_b64", model, opt, data.digits(), epochs=5, bf16=True)


@healthy(
    "mlp.tanh_xavier_momentum_b64",
    what="Tanh MLP with Xavier init, SGD 0.05 + momentum 0.9",
    arch="MLP (tanh)",
    optimizer="SGD momentum",
    schedule="constant",
    task="digits",
    batch="64",
)
def mlp_tanh(root: Path) -> Truth:
    model = mlp((64, 128, 128, 10), activation=nn.Tanh)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return _fit(root, "mlp.tanh_xavier_momentum_b64", model, opt, data.digits(), epochs=5)


@healthy(
    "mlp.wine_epoch_logs",
    what="ReLU MLP on the wine table, Adam 1e-2, training loss logged once per epoch",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="wine (per-epoch logs)",
    batch="16 (last 14)",
)
def mlp_wine(root: Path) -> Truth:
    task = data.tabular("wine")
    model = he_init(mlp((13, 32, 3)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return _fit(
        root,
        "mlp.wine_epoch_logs",
        model,
        opt,
        task,
        epochs=30,
        batch_size=16,
        log_train="epoch",
    )


@healthy(
    "mlp.iris_momentum_b8",
    what="ReLU MLP on iris, SGD 0.02 + momentum 0.9",
    arch="MLP",
    optimizer="SGD momentum",
    schedule="constant",
    task="iris",
    batch="8",
)
def mlp_iris(root: Path) -> Truth:
    task = data.tabular("iris")
    model = he_init(mlp((4, 32, 3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    return _fit(
        root, "mlp.iris_momentum_b8", model, opt, task, epochs=15, batch_size=8, val_slack=0.3
    )


@healthy(
    "mlp.breast_cancer_adam_wd_b32",
    what="ReLU MLP on breast cancer (2 classes), Adam 1e-3 with weight decay 1e-4",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="breast_cancer",
    batch="32 (last 7)",
)
def mlp_cancer(root: Path) -> Truth:
    task = data.tabular("breast_cancer")
    model = he_init(mlp((30, 32, 2)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return _fit(root, "mlp.breast_cancer_adam_wd_b32", model, opt, task, epochs=12, batch_size=32)


@healthy(
    "linear.breast_cancer_rare_malignant_weighted_nesterov_b16",
    what="logistic regression on breast cancer with the malignant training examples cut to "
    "an eighth (13:1) and the loss weighted by inverse class frequency: the rare class is "
    "still recognised (imbalanced data, handled)",
    arch="linear",
    optimizer="SGD Nesterov",
    schedule="constant",
    task="breast_cancer, minority cut to 1/8, weighted loss",
    batch="16",
)
def linear_rare_malignant(root: Path) -> Truth:
    torch.manual_seed(0)
    full = data.tabular("breast_cancer")
    malignant = torch.nonzero(full.y == 0).flatten()
    keep = torch.ones(len(full.y), dtype=torch.bool)
    keep[malignant[len(malignant) // 8 :]] = False
    task = Task("breast_cancer", full.x[keep], full.y[keep], full.x_val, full.y_val, classes=2)
    counts = torch.bincount(task.y, minlength=2).float()
    model = nn.Linear(30, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9, nesterov=True)
    return _fit(
        root,
        "linear.breast_cancer_rare_malignant_weighted_nesterov_b16",
        model,
        opt,
        task,
        epochs=8,
        batch_size=16,
        class_weight=counts.sum() / (2 * counts),
    )


@healthy(
    "mlp.diabetes_adam_mse",
    what="regression: ReLU MLP on diabetes, Adam 3e-3 with weight decay, MSE",
    arch="MLP",
    optimizer="Adam",
    schedule="constant",
    task="diabetes (regression)",
    batch="32 (last 1)",
)
def mlp_diabetes(root: Path) -> Truth:
    task = data.tabular("diabetes")
    model = he_init(mlp((10, 32, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-3)
    return _fit(
        root,
        "mlp.diabetes_adam_mse",
        model,
        opt,
        task,
        epochs=15,
        batch_size=32,
        max_loss_left=0.6,
    )


@healthy(
    "mlp.waves_momentum_cosine",
    what="regression: ReLU MLP on a synthetic nonlinear function, SGD momentum, cosine",
    arch="MLP",
    optimizer="SGD momentum",
    schedule="cosine",
    task="waves (regression)",
    batch="32",
)
def mlp_waves(root: Path) -> Truth:
    model = he_init(mlp((8, 64, 64, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=15)
    return _fit(
        root,
        "mlp.waves_momentum_cosine",
        model,
        opt,
        data.waves(),
        epochs=15,
        batch_size=32,
        scheduler=sched,
    )


@healthy(
    "linear.diabetes_sgd_b16",
    what="regression: linear model on diabetes, SGD 0.01 (the classic baseline)",
    arch="linear",
    optimizer="SGD",
    schedule="constant",
    task="diabetes (regression)",
    batch="16 (last 1)",
)
def linear_diabetes(root: Path) -> Truth:
    task = data.tabular("diabetes")
    model = nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return _fit(
        root,
        "linear.diabetes_sgd_b16",
        model,
        opt,
        task,
        epochs=10,
        batch_size=16,
        max_loss_left=0.6,
    )


@healthy(
    "linear.iris_logistic_adagrad",
    what="logistic regression on iris, Adagrad 0.1, validation every 10 steps",
    arch="linear",
    optimizer="Adagrad",
    schedule="constant",
    task="iris",
    batch="16 (last 8)",
)
def linear_iris(root: Path) -> Truth:
    task = data.tabular("iris")
    model = nn.Linear(4, 3)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.2)
    return _fit(
        root,
        "linear.iris_logistic_adagrad",
        model,
        opt,
        task,
        epochs=40,
        batch_size=16,
        eval_every=10,
        val_slack=0.3,
    )


# -- CNNs ----------------------------------------------------------------------------------


@healthy(
    "cnn.batchnorm_adam_b64",
    what="the demo CNN with BatchNorm2d, Adam 1e-3",
    arch="CNN + BatchNorm",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def cnn_bn_adam(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(root, "cnn.batchnorm_adam_b64", model, opt, data.digits(), epochs=4)


@healthy(
    "cnn.batchnorm_momentum_onecycle_b128",
    what="BatchNorm CNN, SGD + momentum, one-cycle to 0.1 stepped per batch",
    arch="CNN + BatchNorm",
    optimizer="SGD momentum",
    schedule="one-cycle",
    task="digits",
    batch="128 (last 29)",
)
def cnn_onecycle(root: Path) -> Truth:
    task, epochs = data.digits(), 8
    model = batchnorm_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=epochs * steps_per_epoch(task, 128)
    )
    return _fit(
        root,
        "cnn.batchnorm_momentum_onecycle_b128",
        model,
        opt,
        task,
        epochs=epochs,
        batch_size=128,
        scheduler=sched,
        schedule_every="step",
    )


@healthy(
    "cnn.batchnorm_adamw_cosine_b64",
    what="BatchNorm CNN, AdamW 2e-3 (weight decay 0.05), cosine over 5 epochs",
    arch="CNN + BatchNorm",
    optimizer="AdamW",
    schedule="cosine",
    task="digits",
    batch="64",
)
def cnn_adamw_cosine(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    return _fit(
        root,
        "cnn.batchnorm_adamw_cosine_b64",
        model,
        opt,
        data.digits(),
        epochs=5,
        scheduler=sched,
    )


@healthy(
    "cnn.dropout_nesterov_step_b64",
    what="the demo CNN with dropout 0.3, Nesterov SGD 0.02, StepLR x0.5 every 3 epochs",
    arch="CNN",
    optimizer="SGD Nesterov",
    schedule="step",
    task="digits",
    batch="64",
)
def cnn_nesterov_step(root: Path) -> Truth:
    model = SmallCNN(dropout=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return _fit(
        root,
        "cnn.dropout_nesterov_step_b64",
        model,
        opt,
        data.digits(),
        epochs=6,
        scheduler=sched,
    )


@healthy(
    "cnn.batchnorm_bf16_adam_b64",
    what="BatchNorm CNN, Adam 1e-3, bf16 autocast",
    arch="CNN + BatchNorm",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def cnn_bf16(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(root, "cnn.batchnorm_bf16_adam_b64", model, opt, data.digits(), epochs=4, bf16=True)


@healthy(
    "cnn.batchnorm_rmsprop_eval10_b32",
    what="BatchNorm CNN, RMSprop 5e-4, validation every 10 steps",
    arch="CNN + BatchNorm",
    optimizer="RMSprop",
    schedule="constant",
    task="digits",
    batch="32 (last 29)",
)
def cnn_rmsprop(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.RMSprop(model.parameters(), lr=5e-4)
    return _fit(
        root,
        "cnn.batchnorm_rmsprop_eval10_b32",
        model,
        opt,
        data.digits(),
        epochs=3,
        batch_size=32,
        eval_every=10,
        val_slack=0.2,
    )


@healthy(
    "cnn.adagrad_b16",
    what="the demo CNN, Adagrad 0.02 on batches of 16",
    arch="CNN",
    optimizer="Adagrad",
    schedule="constant",
    task="digits",
    batch="16 (last 13)",
)
def cnn_adagrad(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.Adagrad(model.parameters(), lr=0.02)
    return _fit(root, "cnn.adagrad_b16", model, opt, data.digits(), epochs=2, batch_size=16)


@healthy(
    "cnn.adam_b35_last_batch_2",
    what="the demo CNN, Adam 1e-3 on batches of 35: every epoch ends on a batch of 2 images",
    arch="CNN",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="35 (last 2)",
)
def cnn_b35(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(
        root, "cnn.adam_b35_last_batch_2", model, opt, data.digits(), epochs=4, batch_size=35
    )


@healthy(
    "cnn.batchnorm_dropout_momentum_eval_mode_b64",
    what="BatchNorm CNN with dropout 0.5, SGD 0.02 + momentum; validation in eval mode "
    "(model.eval(), then model.train() again): the twin of missing_eval_mode's CNN",
    arch="CNN + BatchNorm + dropout",
    optimizer="SGD momentum",
    schedule="constant",
    task="digits",
    batch="64",
)
def cnn_bn_dropout(root: Path) -> Truth:
    model = batchnorm_cnn(dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    return _fit(
        root, "cnn.batchnorm_dropout_momentum_eval_mode_b64", model, opt, data.digits(), epochs=6
    )


@healthy(
    "cnn.batchnorm_momentum_lr_0.2_warmup_clip_b64",
    what="BatchNorm CNN at SGD lr 0.2 + momentum (10x the usual) made safe by a 40-step "
    "warm-up + cosine, clipping at norm 1 (active on most steps)",
    arch="CNN + BatchNorm",
    optimizer="SGD momentum",
    schedule="warm-up + cosine",
    task="digits",
    batch="64",
)
def cnn_high_lr_warmup(root: Path) -> Truth:
    task, epochs = data.digits(), 5
    model = batchnorm_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    sched = warmup_cosine(opt, 40, epochs * steps_per_epoch(task, 64))
    return _fit(
        root,
        "cnn.batchnorm_momentum_lr_0.2_warmup_clip_b64",
        model,
        opt,
        task,
        epochs=epochs,
        scheduler=sched,
        schedule_every="step",
        clip=1.0,
    )


# -- residual nets ---------------------------------------------------------------------------


@healthy(
    "resnet.cnn_nesterov_warmup_cosine_b64",
    what="a 2-block ResNet, Nesterov SGD 0.05 with weight decay, 20-step warm-up + cosine",
    arch="ResNet (BatchNorm)",
    optimizer="SGD Nesterov",
    schedule="warm-up + cosine",
    task="digits",
    batch="64",
)
def resnet_warmup_cosine(root: Path) -> Truth:
    task, epochs = data.digits(), 4
    model = models.ResNet()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = warmup_cosine(opt, 20, epochs * steps_per_epoch(task, 64))
    return _fit(
        root,
        "resnet.cnn_nesterov_warmup_cosine_b64",
        model,
        opt,
        task,
        epochs=epochs,
        scheduler=sched,
        schedule_every="step",
    )


@healthy(
    "resnet.cnn_adamw_smoothing_clip_b128",
    what="a 2-block ResNet, AdamW 3e-3, label smoothing 0.1, clipping at norm 1",
    arch="ResNet (BatchNorm)",
    optimizer="AdamW",
    schedule="constant",
    task="digits",
    batch="128 (last 29)",
)
def resnet_adamw(root: Path) -> Truth:
    model = models.ResNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    return _fit(
        root,
        "resnet.cnn_adamw_smoothing_clip_b128",
        model,
        opt,
        data.digits(),
        epochs=6,
        batch_size=128,
        label_smoothing=0.1,
        clip=1.0,
    )


@healthy(
    "resnet.mlp_batchnorm_adam_b64",
    what="a residual MLP (3 BatchNorm blocks), Adam 1e-3",
    arch="residual MLP (BatchNorm)",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def resnet_mlp(root: Path) -> Truth:
    model = models.ResidualMLP(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _fit(root, "resnet.mlp_batchnorm_adam_b64", model, opt, data.digits(), epochs=4)


@healthy(
    "resnet.mlp_waves_adamw_cosine",
    what="regression: a residual MLP on the synthetic function, AdamW 3e-3, cosine",
    arch="residual MLP (BatchNorm)",
    optimizer="AdamW",
    schedule="cosine",
    task="waves (regression)",
    batch="64",
)
def resnet_waves(root: Path) -> Truth:
    model = models.ResidualMLP(8, 1, width=64, blocks=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    return _fit(
        root,
        "resnet.mlp_waves_adamw_cosine",
        model,
        opt,
        data.waves(),
        epochs=20,
        scheduler=sched,
    )


# -- recurrent nets --------------------------------------------------------------------------


@healthy(
    "rnn.gru_rmsprop_clip_b64",
    what="GRU over the digits' rows, RMSprop 2e-3, clipping at norm 1",
    arch="GRU",
    optimizer="RMSprop",
    schedule="constant",
    task="digit rows",
    batch="64",
)
def gru_rmsprop(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10)
    opt = torch.optim.RMSprop(model.parameters(), lr=2e-3)
    return _fit(
        root, "rnn.gru_rmsprop_clip_b64", model, opt, data.digit_rows(), epochs=10, clip=1.0
    )


@healthy(
    "rnn.lstm_adam_cosine_b32",
    what="LSTM over the digits' rows, Adam 3e-3, cosine over 6 epochs",
    arch="LSTM",
    optimizer="Adam",
    schedule="cosine",
    task="digit rows",
    batch="32",
)
def lstm_adam(root: Path) -> Truth:
    model = models.SequenceClassifier("lstm", 8, 10)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
    return _fit(
        root,
        "rnn.lstm_adam_cosine_b32",
        model,
        opt,
        data.digit_rows(),
        epochs=8,
        batch_size=32,
        scheduler=sched,
    )


@healthy(
    "rnn.gru_char_adam_b32",
    what="character-level GRU language model on Python's textwrap.py, Adam 3e-3",
    arch="GRU (char LM)",
    optimizer="Adam",
    schedule="constant",
    task="text (char LM)",
    batch="32 (last 24)",
)
def gru_char(root: Path) -> Truth:
    task = data.text()
    model = models.CharModel("gru", task.classes or 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return _fit(
        root,
        "rnn.gru_char_adam_b32",
        model,
        opt,
        task,
        epochs=4,
        batch_size=32,
        max_loss_left=0.6,
    )


@healthy(
    "rnn.lstm_char_sgd_clip_b32",
    what="character-level LSTM language model, plain SGD 1.0 with clipping at 0.5 "
    "(the word_language_model recipe)",
    arch="LSTM (char LM)",
    optimizer="SGD",
    schedule="step",
    task="text (char LM)",
    batch="32 (last 24)",
)
def lstm_char(root: Path) -> Truth:
    task = data.text()
    model = models.CharModel("lstm", task.classes or 0)
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return _fit(
        root,
        "rnn.lstm_char_sgd_clip_b32",
        model,
        opt,
        task,
        epochs=5,
        batch_size=32,
        clip=0.5,
        scheduler=sched,
        max_loss_left=0.7,
    )


@healthy(
    "rnn.lstm_sines_adam_b32",
    what="regression: LSTM predicting the next value of noisy sine waves, Adam 1e-2",
    arch="LSTM",
    optimizer="Adam",
    schedule="constant",
    task="sines (sequence regression)",
    batch="32",
)
def lstm_sines(root: Path) -> Truth:
    model = models.SequenceRegressor()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return _fit(root, "rnn.lstm_sines_adam_b32", model, opt, data.sines(), epochs=8, batch_size=32)


@healthy(
    "rnn.lstm_sines_adam_b16_last_batch_1",
    what="regression: the sine LSTM on 609 training sequences, Adam 5e-3 on batches of 16: "
    "every epoch ends on a batch of one sequence",
    arch="LSTM",
    optimizer="Adam",
    schedule="constant",
    task="sines (sequence regression)",
    batch="16 (last 1)",
)
def lstm_sines_b16(root: Path) -> Truth:
    model = models.SequenceRegressor()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    task = data.sines().subset(609)
    return _fit(
        root, "rnn.lstm_sines_adam_b16_last_batch_1", model, opt, task, epochs=8, batch_size=16
    )


@healthy(
    "rnn.gru_accumulate4_zero_grad_in_place",
    what="GRU over the digits' rows, Adam 5e-3, 4 micro-batches of 16 accumulated per step "
    "on purpose; zero_grad(set_to_none=False) zeroes the gradients in place every 4th",
    arch="GRU",
    optimizer="Adam",
    schedule="constant",
    task="digit rows",
    batch="16 x 4 accumulated",
)
def gru_accumulate(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    return _fit(
        root,
        "rnn.gru_accumulate4_zero_grad_in_place",
        model,
        opt,
        data.digit_rows(),
        epochs=8,
        batch_size=16,
        accumulate=4,
        zero_grad_set_to_none=False,
    )


# -- transformers ----------------------------------------------------------------------------


@healthy(
    "transformer.prenorm_warmup_cosine_b64",
    what="one pre-norm block over the digits' rows, AdamW 3e-3, 30-step warm-up + cosine",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    schedule="warm-up + cosine",
    task="digit rows",
    batch="64",
)
def transformer_warmup(root: Path) -> Truth:
    task, epochs = data.digit_rows(), 6
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = warmup_cosine(opt, 30, epochs * steps_per_epoch(task, 64))
    return _fit(
        root,
        "transformer.prenorm_warmup_cosine_b64",
        model,
        opt,
        task,
        epochs=epochs,
        scheduler=sched,
        schedule_every="step",
    )


@healthy(
    "transformer.char_prenorm_adamw_b32",
    what="a 2-block causal pre-norm transformer language model on textwrap.py, AdamW, "
    "warm-up + cosine",
    arch="transformer (pre-norm, causal)",
    optimizer="AdamW",
    schedule="warm-up + cosine",
    task="text (char LM)",
    batch="32 (last 24)",
)
def transformer_char(root: Path) -> Truth:
    task, epochs = data.text(), 4
    model = models.Transformer(task.classes or 0, vocab=task.classes, length=32, blocks=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = warmup_cosine(opt, 20, epochs * steps_per_epoch(task, 32))
    return _fit(
        root,
        "transformer.char_prenorm_adamw_b32",
        model,
        opt,
        task,
        epochs=epochs,
        batch_size=32,
        scheduler=sched,
        schedule_every="step",
        max_loss_left=0.6,
    )


@healthy(
    "transformer.postnorm_dropout_adam_b64",
    what="one post-norm block with dropout 0.1 over the digits' rows, Adam 1e-3",
    arch="transformer (post-norm)",
    optimizer="Adam",
    schedule="constant",
    task="digit rows",
    batch="64",
)
def transformer_postnorm(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8, pre_norm=False, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return _fit(
        root, "transformer.postnorm_dropout_adam_b64", model, opt, data.digit_rows(), epochs=8
    )


@healthy(
    "transformer.prenorm_zero_grad_before_backward_b64",
    what="pre-norm block over the digits' rows, AdamW 3e-3; the loop calls zero_grad() "
    "after the forward, just before backward (legitimate: nothing accumulated yet)",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    schedule="constant",
    task="digit rows",
    batch="64",
)
def transformer_zero_grad_late(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    return _fit(
        root,
        "transformer.prenorm_zero_grad_before_backward_b64",
        model,
        opt,
        data.digit_rows(),
        epochs=6,
        zero_grad_at="before_backward",
    )


@healthy(
    "transformer.prenorm_bf16_accumulate_b64",
    what="pre-norm block, AdamW 2e-3, bf16 autocast, 2 micro-batches of 64 per step",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    schedule="constant",
    task="digit rows",
    batch="64 x 2 accumulated",
)
def transformer_bf16(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
    return _fit(
        root,
        "transformer.prenorm_bf16_accumulate_b64",
        model,
        opt,
        data.digit_rows(),
        epochs=8,
        batch_size=64,
        accumulate=2,
        bf16=True,
    )


# -- frozen backbones ------------------------------------------------------------------------


@healthy(
    "frozen.mlp_backbone_adam_head",
    what="an MLP pre-trained on digits 0-4, frozen (requires_grad=False); a new 10-class "
    "head trained with Adam (the optimizer given every parameter)",
    arch="MLP, frozen backbone",
    optimizer="Adam",
    schedule="constant",
    task="digits",
    batch="64",
)
def frozen_mlp(root: Path) -> Truth:
    task = data.digits()
    model = he_init(mlp((64, 128, 128, 10)))
    pretrain(model, _first_classes(task, 5), epochs=4)
    for p in model.parameters():
        p.requires_grad_(False)
    model[-1] = nn.Linear(128, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return _fit(root, "frozen.mlp_backbone_adam_head", model, opt, task, epochs=6, val_slack=0.1)


@healthy(
    "frozen.cnn_features_momentum_head",
    what="the demo CNN pre-trained on digits 0-4; conv features frozen, the classifier "
    "re-initialised and trained with SGD momentum (the optimizer given only the head)",
    arch="CNN, frozen backbone",
    optimizer="SGD momentum",
    schedule="constant",
    task="digits",
    batch="64",
)
def frozen_cnn(root: Path) -> Truth:
    task = data.digits()
    model = SmallCNN()
    pretrain(model, _first_classes(task, 5), epochs=3)
    model.features.requires_grad_(False)
    for m in model.classifier:
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    opt = torch.optim.SGD(model.classifier.parameters(), lr=0.02, momentum=0.9)
    return _fit(root, "frozen.cnn_features_momentum_head", model, opt, task, epochs=5)
