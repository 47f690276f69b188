"""The pathological corpus: every rule at a mild and a severe dose, on several families.

The scenario suite's broken runs (``tests.scenarios.catalogue``) come first, trained by
their own code and checked by their own claims; the runs below add a second
architecture per rule, milder doses, and the classic mistakes, each named after the bug
rather than its symptom where a rule names it: ``zero_grad()`` forgotten
(``missing_zero_grad``), validation without ``model.eval()`` (``missing_eval_mode``),
labels shuffled apart from their inputs (``chance_level``), a learning rate 100x too
high with and without clipping (``lr_too_high``), dead ReLUs behind modules and behind
``F.relu`` calls, a deep sigmoid net, exploding gradients in a recurrent net, NaN from
the log of a negative number in a custom module, a loader that sleeps, overfitting a
tiny training set.

Each run is named ``<rule>.<dose>_<what>`` and lists the rules it must trigger
(``expect``) and those its pathology implies (``also``); its claims measure the symptom
each expected rule describes, with the test's own instruments, so that a label never
outlives its pathology. "mild" is a dose near the rule's line, or a pathology the run
survives; "severe" is the textbook case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from collector import Collector
from telemetry.demo import SmallCNN, sigmoid_mlp
from tests.corpus import data, models
from tests.corpus.data import Task
from tests.corpus.healthy import dropout_mlp
from tests.corpus.loop import CorpusTrace, train
from tests.corpus.registry import pathological
from tests.scenarios import probes
from tests.scenarios.catalogue import SCENARIOS, Truth, patience_stop
from tests.scenarios.harness import COLLECTOR_OPTIONS, batchnorm_cnn, he_init, mlp

# -- the scenario suite's broken runs, reused -------------------------------------------------

# scenario -> (corpus name, dose, architecture, optimizer, batch)
REUSED = {
    "overfit": ("overfitting.severe_cnn_60_images", "severe", "CNN", "Adam", "32"),
    "trained_too_long": (
        "early_stopping.severe_mlp_lr_cut_then_12_epochs",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
    "too_small": ("underfitting.severe_mlp_1_unit_bottleneck", "severe", "MLP", "Adam", "256"),
    "shuffled_labels": (
        "loss_not_decreasing.severe_mlp_shuffled_labels",
        "severe",
        "MLP",
        "SGD",
        "128",
    ),
    "corrupt_batches": (
        "loss_spike.severe_mlp_two_random_label_batches",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
    "gradient_ascent": ("divergence.mild_mlp_gradient_ascent", "mild", "MLP", "Adam", "128"),
    "learning_rate_far_too_high": (
        "divergence.severe_cnn_sgd_lr_1",
        "severe",
        "CNN",
        "SGD momentum",
        "64",
    ),
    "learning_rate_too_high": (
        "loss_oscillation.severe_mlp_adam_lr_0.03_b16",
        "severe",
        "MLP",
        "Adam",
        "16",
    ),
    "decayed_too_early": (
        "accuracy_plateau.severe_mlp_lr_cut_1000x",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
    "nan_in_data": ("nonfinite.mild_cnn_one_nan_pixel", "mild", "CNN", "Adam", "64"),
    "deep_sigmoid": (
        "vanishing_gradients.severe_mlp_12_sigmoid_layers",
        "severe",
        "MLP",
        "SGD",
        "64",
    ),
    "unnormalised_inputs": (
        "exploding_gradients.severe_cnn_unnormalised_inputs",
        "severe",
        "CNN",
        "SGD momentum",
        "64",
    ),
    "learning_rate_typo": ("update_ratio.severe_mlp_body_lr_1e-7", "severe", "MLP", "Adam", "128"),
    "head_not_in_optimizer": (
        "stalled_parameters.severe_mlp_head_not_in_optimizer",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
    "unused_branch": ("unused_parameters.severe_mlp_aux_head", "severe", "MLP", "Adam", "128"),
    "negative_bias": ("dead_relu.severe_cnn_negative_bias", "severe", "CNN", "Adam", "64"),
    "tanh_large_init": (
        "saturated_activations.severe_mlp_tanh_n01_init",
        "severe",
        "MLP (tanh)",
        "Adam",
        "128",
    ),
    "init_too_large": (
        "poor_initialization.severe_mlp_he_x3_7_layers",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
    "slow_loader": (
        "data_bottleneck.severe_mlp_augmentation_in_getitem",
        "severe",
        "MLP",
        "Adam",
        "128",
    ),
}


# scenario -> rules its bug implies beyond the scenario suite's own ``also``: the rules that
# name a bug (issue 16) where a scenario's pathology is that bug
ALSO_NAMED = {
    "learning_rate_far_too_high": ("lr_too_high",),
    "learning_rate_too_high": ("lr_too_high",),
    "unnormalised_inputs": ("unnormalized_inputs",),  # digits x 16: raw 0-16 intensities
}


def _digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = data.digits()
    return d.x, d.y, d.x_val, d.y_val


for _scenario in SCENARIOS:
    if _scenario.rule is None:
        continue  # the scenario suite's healthy runs stay there
    _name, _level, _arch, _optimizer, _batch = REUSED[_scenario.name]
    pathological(
        _name,
        expect=(_scenario.rule,),
        also=tuple(sorted(_scenario.also | set(ALSO_NAMED.get(_scenario.name, ())))),
        level=_level,
        what=f"{_scenario.what} (scenario {_scenario.name})",
        arch=_arch,
        optimizer=_optimizer,
        batch=_batch,
    )(lambda root, s=_scenario: s.train(root, _digits_data()))


# -- instruments --------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return probes.median(values)


def _last(values: list[float], frac: float = 0.2) -> float:
    """The median of the last ``frac`` of ``values`` (at least 3 points)."""
    return _median(values[-max(3, int(len(values) * frac)) :])


def _first_nonfinite(values: list[float]) -> int:
    """The 1-based index of the first non-finite value, or -1."""
    return next((i + 1 for i, v in enumerate(values) if not math.isfinite(v)), -1)


def _truth(trace: CorpusTrace, numbers: dict[str, float], claims: dict[str, bool]) -> Truth:
    return Truth(trace.run_id, {"steps": trace.steps, **numbers}, claims)


def _learned_nothing(trace: CorpusTrace, classes: int) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``loss_not_decreasing``: validation accuracy at chance, and the training
    loss of the last fifth of the run still at (or above) the chance level ln(classes)."""
    last = _last(trace.train_loss)
    numbers = {
        "train_loss_last_fifth": last,
        "chance_loss": math.log(classes),
        "val_acc_last": trace.val_acc[-1],
    }
    return numbers, {
        f"validation accuracy at chance (< {1.5 / classes:.2f})": trace.val_acc[-1] < 1.5 / classes,
        "the last fifth's training loss >= 95% of chance (ln C)": last >= 0.95 * math.log(classes),
    }


def _dead(
    model: nn.Module, x: torch.Tensor, module: str
) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``dead_relu``: > 50% of ``module``'s units never fire on ``x``."""
    share = probes.dead_relu_fractions(model, x)[module]
    return {f"dead_share_{module}": share}, {
        f"> 50% of ReLU {module}'s units never fire": share > 0.5
    }


def _oscillates(trace: CorpusTrace) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``loss_oscillation``: over the last half the loss jumps by a median of
    at least 10% of its starting level from one step to the next."""
    tail = trace.train_loss[len(trace.train_loss) // 2 :]
    jump = _median([abs(b - a) for a, b in zip(tail, tail[1:], strict=False)])
    start = _median(trace.train_loss[:10])
    return {"median_jump_last_half": jump, "start_loss": start}, {
        "over the last half the loss jumps by a median >= 10% of its start": jump >= 0.1 * start
    }


def _piles_up(trace: CorpusTrace) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``missing_zero_grad``: each step's gradient is the sum of every
    backward so far, so the global gradient norm grows: the last tenth's median ends
    > 5x the first step's (one backward, nothing piled up yet)."""
    first, last = trace.grad_norm[0], _last(trace.grad_norm, 0.1)
    return {"grad_norm_first": first, "grad_norm_last_tenth": last}, {
        "the gradient norm grows > 5x (the last tenth's median over the first step's)": last
        > 5 * first
    }


def _overfits(trace: CorpusTrace) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``overfitting``: validation loss ends > 10% above its best (mean of the
    last 3), the best >= 3 evaluations before the end, training loss still falling."""
    val = trace.val_loss
    best = min(range(len(val)), key=val.__getitem__)
    per_eval = len(trace.train_loss) // len(val)
    at_best = _median(trace.train_loss[best * per_eval : (best + 1) * per_eval])
    tail = sum(val[-3:]) / 3
    last = _median(trace.train_loss[-per_eval:])
    return {
        "val_loss_best": val[best],
        "val_loss_last3": tail,
        "best_eval": best,
        "train_loss_at_best": at_best,
        "train_loss_last": last,
    }, {
        "validation loss ends > 10% above its best": tail > 1.1 * val[best],
        "the best is >= 3 evaluations before the end": best <= len(val) - 4,
        "training loss kept falling (< 1/2 of its level at the best)": last < 0.5 * at_best,
    }


def _update_ratio(
    model: nn.Module, before: dict[str, torch.Tensor], steps: int
) -> dict[str, float]:
    """Each parameter's mean change per step, relative to its initial norm."""
    return {
        name: float((p.detach() - before[name]).norm() / before[name].norm()) / steps
        for name, p in model.named_parameters()
        if before[name].norm() > 0
    }


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- overfitting, early stopping, underfitting ------------------------------------------------


@pathological(
    "overfitting.mild_mlp_60_images",
    expect=("overfitting",),
    also=("early_stopping",),
    level="mild",
    what="a 256-wide MLP on 60 training images for 80 epochs (validation still 80%+)",
    arch="MLP",
    optimizer="Adam",
    batch="20",
)
def overfit_mlp(root: Path) -> Truth:
    model = he_init(mlp((64, 256, 256, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    task = data.digits().subset(60)
    trace = train(
        root, "overfitting.mild_mlp_60_images", model, opt, task, epochs=80, batch_size=20
    )
    numbers, claims = _overfits(trace)
    numbers["val_acc_last"] = trace.val_acc[-1]
    claims["validation accuracy still >= 75%"] = trace.val_acc[-1] >= 0.75
    return _truth(trace, numbers, claims)


@pathological(
    "early_stopping.mild_cnn_lr_cut_then_7_epochs",
    expect=("early_stopping",),
    also=("update_ratio",),
    level="mild",
    what="BatchNorm CNN converged in 5 epochs, the LR cut 100x, then 7 more epochs",
    arch="CNN + BatchNorm",
    optimizer="Adam",
    schedule="step",
    batch="128",
)
def early_cnn(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5], gamma=0.01)
    trace = train(
        root,
        "early_stopping.mild_cnn_lr_cut_then_7_epochs",
        model,
        opt,
        data.digits(),
        epochs=12,
        batch_size=128,
        scheduler=sched,
    )
    stop = patience_stop(trace.val_loss)
    numbers = {
        "stop_epoch": -1 if stop is None else stop,
        "epochs": len(trace.val_loss),
        "val_acc_last": trace.val_acc[-1],
    }
    return _truth(
        trace,
        numbers,
        {
            "patience-5 early stopping stops >= 2 epochs before the end": (
                stop is not None and stop <= len(trace.val_loss) - 3
            ),
            "the epochs after it gain < 1 point of validation accuracy": (
                stop is not None and trace.val_acc[-1] - trace.val_acc[stop] < 0.01
            ),
            "validation loss ends within 10% of its best": trace.val_loss[-1]
            <= 1.1 * min(trace.val_loss),
        },
    )


@pathological(
    "underfitting.mild_linear_nonlinear_regression",
    expect=("underfitting",),
    level="mild",
    what="regression: a linear model on a nonlinear function (R^2 ~0.15, no train/val gap)",
    arch="linear",
    optimizer="SGD",
    task="waves (regression)",
    batch="128",
)
def linear_waves(root: Path) -> Truth:
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    task = data.waves()
    trace = train(
        root,
        "underfitting.mild_linear_nonlinear_regression",
        model,
        opt,
        task,
        epochs=30,
        batch_size=128,
    )
    last_train = _last(trace.train_loss, 0.1)
    numbers = {
        "val_r2_last": trace.val_r2[-1],
        "train_loss_first5": _median(trace.train_loss[:5]),
        "train_loss_last_tenth": last_train,
        "val_loss_last": trace.val_loss[-1],
    }
    return _truth(
        trace,
        numbers,
        {
            "validation R^2 < 0.3 (the model cannot fit the function)": trace.val_r2[-1] < 0.3,
            "validation loss within 20% of the training loss (no gap)": abs(
                trace.val_loss[-1] - last_train
            )
            <= 0.2 * last_train,
        },
    )


@pathological(
    "underfitting.severe_gru_2_hidden_units",
    expect=("underfitting",),
    level="severe",
    what="a GRU with 2 hidden units on the digits' rows",
    arch="GRU",
    optimizer="Adam",
    task="digit rows",
    batch="64",
)
def gru_two_units(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10, hidden=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    trace = train(
        root, "underfitting.severe_gru_2_hidden_units", model, opt, data.digit_rows(), epochs=8
    )
    per_epoch = trace.steps // 8
    acc = sum(trace.train_acc[-per_epoch:]) / per_epoch
    numbers = {
        "train_acc_last_epoch": acc,
        "val_acc_last": trace.val_acc[-1],
        "train_loss_first5": _median(trace.train_loss[:5]),
        "train_loss_last_epoch": _median(trace.train_loss[-per_epoch:]),
    }
    return _truth(
        trace,
        numbers,
        {
            "training accuracy stays below 50%": acc < 0.5,
            "validation accuracy within 5 points of training (no gap)": abs(trace.val_acc[-1] - acc)
            <= 0.05,
            "the loss fell >= 5% (it learns a little)": numbers["train_loss_last_epoch"]
            <= 0.95 * numbers["train_loss_first5"],
        },
    )


# -- the loss curve -----------------------------------------------------------------------------


@pathological(
    "loss_not_decreasing.severe_transformer_lr_100x_clipped",
    expect=("loss_not_decreasing",),
    also=(
        "update_ratio",
        "early_stopping",
        "accuracy_plateau",
        "lr_too_high",
        "prediction_collapse",
    ),
    level="severe",
    what="pre-norm transformer, AdamW at 0.3 (100x too high) with clipping at norm 1: "
    "clipping bounds the gradient, not Adam's step",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    task="digit rows",
    batch="64",
)
def transformer_lr_100x(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=0.3)
    trace = train(
        root,
        "loss_not_decreasing.severe_transformer_lr_100x_clipped",
        model,
        opt,
        data.digit_rows(),
        epochs=4,
        clip=1.0,
    )
    return _truth(trace, *_learned_nothing(trace, 10))


@pathological(
    "loss_not_decreasing.severe_cnn_sgd_lr_100x_clipped",
    expect=("loss_not_decreasing", "dead_relu"),
    also=(
        "chance_level",  # a model that learned nothing predicts at chance
        "update_ratio",
        "vanishing_gradients",
        "early_stopping",
        "accuracy_plateau",
        "lr_too_high",
        "prediction_collapse",
    ),
    level="severe",
    what="the demo CNN at SGD lr 2.0 + momentum (100x too high) with clipping at norm 1: "
    "every ReLU dies within 6 steps",
    arch="CNN",
    optimizer="SGD momentum",
    batch="64",
)
def cnn_lr_100x_clipped(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=2.0, momentum=0.9)
    task = data.digits()
    trace = train(
        root,
        "loss_not_decreasing.severe_cnn_sgd_lr_100x_clipped",
        model,
        opt,
        task,
        epochs=4,
        clip=1.0,
    )
    numbers, claims = _learned_nothing(trace, 10)
    more, dead = _dead(model, task.x, "classifier.2")
    return _truth(trace, numbers | more, claims | dead)


@pathological(
    "loss_not_decreasing.mild_cnn_zero_grad_forgotten",
    expect=("loss_not_decreasing", "dead_relu", "missing_zero_grad"),
    also=(
        "exploding_gradients",
        "loss_oscillation",
        "update_ratio",
        "early_stopping",
        "accuracy_plateau",
        "loss_spike",
        "prediction_collapse",
    ),
    level="mild",
    what="BatchNorm CNN, SGD + momentum, optimizer.zero_grad() never called: gradients pile "
    "up, the loss ends above chance",
    arch="CNN + BatchNorm",
    optimizer="SGD momentum",
    batch="64",
)
def cnn_zero_grad_forgotten(root: Path) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    task = data.digits()
    trace = train(
        root,
        "loss_not_decreasing.mild_cnn_zero_grad_forgotten",
        model,
        opt,
        task,
        epochs=3,
        zero_grad=False,
    )
    numbers, claims = _learned_nothing(trace, 10)
    more, dead = _dead(model, task.x, "classifier.2")
    piled, grows = _piles_up(trace)
    return _truth(trace, numbers | more | piled, claims | dead | grows)


@pathological(
    "loss_spike.mild_gru_one_random_label_batch",
    expect=("loss_spike",),
    level="mild",
    what="GRU over the digits' rows; the batch of step 80 carries random labels",
    arch="GRU",
    optimizer="Adam",
    task="digit rows",
    batch="64",
)
def gru_one_bad_batch(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(3)

    def perturb(step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x, torch.randint(0, 10, y.shape, generator=gen)) if step == 80 else (x, y)

    trace = train(
        root,
        "loss_spike.mild_gru_one_random_label_batch",
        model,
        opt,
        data.digit_rows(),
        epochs=6,
        perturb=perturb,
    )
    loss = trace.train_loss
    before, after = _median(loss[59:79]), max(loss[82:86])
    return _truth(
        trace,
        {"loss_at_80": loss[79], "median_before": before, "max_3_to_6_after": after},
        {
            "step 80: loss >= 3x its previous 20-step median": loss[79] >= 3 * before,
            "back under 1.5x that median 3-6 steps later": after < 1.5 * before,
        },
    )


@pathological(
    "loss_oscillation.mild_mlp_zero_grad_forgotten",
    expect=("loss_oscillation", "missing_zero_grad"),
    also=("overfitting", "early_stopping", "loss_spike"),
    level="mild",
    what="ReLU MLP, plain SGD 0.02, optimizer.zero_grad() never called: each step applies "
    "the sum of every gradient so far",
    arch="MLP",
    optimizer="SGD",
    batch="64",
)
def mlp_zero_grad_forgotten(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    trace = train(
        root,
        "loss_oscillation.mild_mlp_zero_grad_forgotten",
        model,
        opt,
        data.digits(),
        epochs=5,
        zero_grad=False,
    )
    numbers, claims = _oscillates(trace)
    piled, grows = _piles_up(trace)
    numbers, claims = numbers | piled, claims | grows
    numbers["val_loss_last_over_best"] = trace.val_loss[-1] / min(trace.val_loss)
    claims["validation loss ends > 1.5x its best"] = numbers["val_loss_last_over_best"] > 1.5
    return _truth(trace, numbers, claims)


@pathological(
    "loss_oscillation.severe_resnet_sgd_lr_1_momentum",
    expect=("loss_oscillation",),
    also=(
        "overfitting",
        "early_stopping",
        "loss_spike",
        "update_ratio",
        "dead_relu",
        "lr_too_high",
    ),
    level="severe",
    what="a 2-block ResNet at SGD lr 1.0 + momentum 0.9 (~20x too high): BatchNorm keeps it "
    "finite, the loss bounces and validation loss ends 2x its best",
    arch="ResNet (BatchNorm)",
    optimizer="SGD momentum",
    batch="32 (last 29)",
)
def resnet_lr_1(root: Path) -> Truth:
    model = models.ResNet()
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    trace = train(
        root,
        "loss_oscillation.severe_resnet_sgd_lr_1_momentum",
        model,
        opt,
        data.digits(),
        epochs=3,
        batch_size=32,
    )
    numbers, claims = _oscillates(trace)
    numbers["val_loss_last_over_best"] = trace.val_loss[-1] / min(trace.val_loss)
    claims["validation loss ends > 1.5x its best"] = numbers["val_loss_last_over_best"] > 1.5
    claims["every loss finite (not a divergence)"] = all(map(math.isfinite, trace.train_loss))
    return _truth(trace, numbers, claims)


@pathological(
    "accuracy_plateau.severe_cnn_lr_cut_1000x_after_1_epoch",
    expect=("accuracy_plateau",),
    also=("update_ratio", "early_stopping"),
    level="severe",
    what="the demo CNN, Adam; the LR cut 1000x after the first epoch, validation every 5 steps",
    arch="CNN",
    optimizer="Adam",
    schedule="step",
    batch="32",
)
def cnn_plateau(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.001)
    trace = train(
        root,
        "accuracy_plateau.severe_cnn_lr_cut_1000x_after_1_epoch",
        model,
        opt,
        data.digits(),
        epochs=3,
        batch_size=32,
        scheduler=sched,
        eval_every=5,
    )
    acc, cut = trace.val_acc, 45 // 5  # the evaluations of the first epoch (45 steps)
    best_before = max(acc[:cut])
    return _truth(
        trace,
        {
            "val_acc_best_first_epoch": best_before,
            "val_acc_best_after": max(acc[cut:]),
            "evaluations_after_cut": len(acc) - cut,
        },
        {
            "no evaluation after the cut beats the first epoch's best by 0.5 points": max(acc[cut:])
            < best_before + 0.005,
            ">= 10 evaluations after the cut": len(acc) - cut >= 10,
            "training accuracy below 99%": trace.train_acc[-1] < 0.99,
        },
    )


# -- non-finite values and divergence -------------------------------------------------------


class LogFeatures(nn.Module):
    """A custom layer whose own forward takes the log of a Linear's output: NaN wherever
    that output is negative (its child is finite; the NaN is made by its functional code)."""

    def __init__(self, width: int, *, bias: float | None = None, gain: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        with torch.no_grad():
            self.linear.weight.mul_(gain)
            if bias is not None:
                self.linear.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.linear(x))


def _nonfinite_claims(trace: CorpusTrace, *, by: int) -> tuple[dict[str, float], dict[str, bool]]:
    first = _first_nonfinite(trace.train_loss)
    return {"first_nonfinite_step": first}, {
        f"the loss turns NaN by step {by}": 0 < first <= by,
        "and stays NaN": all(not math.isfinite(v) for v in trace.train_loss[first - 1 :]),
    }


@pathological(
    "nonfinite.severe_mlp_log_of_linear_output",
    expect=("nonfinite",),
    also=("divergence", "prediction_collapse"),
    level="severe",
    what="a custom module computes torch.log(self.linear(x)): NaN from the first step",
    arch="MLP (custom module)",
    optimizer="Adam",
    batch="64",
)
def log_of_negative(root: Path) -> Truth:
    model = nn.Sequential(nn.Flatten(), LogFeatures(64), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(
        root, "nonfinite.severe_mlp_log_of_linear_output", model, opt, data.digits(), epochs=2
    )
    return _truth(trace, *_nonfinite_claims(trace, by=1))


@pathological(
    "nonfinite.mild_mlp_log_turns_negative",
    expect=("nonfinite",),
    also=("divergence", "update_ratio", "prediction_collapse"),
    level="mild",
    what="the same custom log layer started positive (bias 1, small weights): training "
    "drives an output below zero at step 10",
    arch="MLP (custom module)",
    optimizer="Adam",
    batch="64",
)
def log_turns_negative(root: Path) -> Truth:
    model = nn.Sequential(
        nn.Flatten(), LogFeatures(64, bias=1.0, gain=0.05), nn.ReLU(), nn.Linear(64, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    trace = train(
        root, "nonfinite.mild_mlp_log_turns_negative", model, opt, data.digits(), epochs=3
    )
    numbers, claims = _nonfinite_claims(trace, by=30)
    claims["the first steps are finite"] = numbers["first_nonfinite_step"] > 3
    return _truth(trace, numbers, claims)


# -- gradients ---------------------------------------------------------------------------------


class ReluCharRNN(nn.Module):
    """A character-level Elman RNN with ReLU units and an orthogonal recurrent matrix x1.2:
    over 32 characters the backward pass multiplies by up to 1.2^32 ~ 340."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.rnn = nn.RNN(32, 96, nonlinearity="relu", batch_first=True)
        self.head = nn.Linear(96, vocab)
        with torch.no_grad():
            nn.init.orthogonal_(self.rnn.weight_hh_l0)
            self.rnn.weight_hh_l0.mul_(1.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


@pathological(
    "exploding_gradients.severe_rnn_relu_no_clipping",
    expect=("exploding_gradients", "divergence", "nonfinite"),
    also=("update_ratio", "loss_spike", "prediction_collapse"),
    level="severe",
    what="character-level ReLU RNN (recurrent matrix 1.2x orthogonal), SGD + momentum, no "
    "clipping: the gradient norm grows 1e17x in 6 steps, then NaN",
    arch="RNN (ReLU, char LM)",
    optimizer="SGD momentum",
    task="text (char LM)",
    batch="32",
)
def rnn_exploding(root: Path) -> Truth:
    task = data.text()
    model = ReluCharRNN(task.classes or 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    trace = train(
        root,
        "exploding_gradients.severe_rnn_relu_no_clipping",
        model,
        opt,
        task,
        epochs=2,
        batch_size=32,
    )
    finite = [g for g in trace.grad_norm if math.isfinite(g)]
    numbers = {
        "grad_norm_first": trace.grad_norm[0],
        "grad_norm_peak_finite": max(finite),
        "first_nonfinite_grad_step": _first_nonfinite(trace.grad_norm),
    }
    more, claims = _nonfinite_claims(trace, by=20)
    return _truth(
        trace,
        numbers | more,
        claims
        | {
            "the gradient norm grew > 1000x its first value": max(finite)
            > 1000 * trace.grad_norm[0],
        },
    )


@pathological(
    "exploding_gradients.severe_mlp_sgd_lr_100x",
    expect=("exploding_gradients", "dead_relu", "loss_not_decreasing"),
    also=(
        "chance_level",  # a model that learned nothing predicts at chance
        "update_ratio",
        "vanishing_gradients",
        "loss_spike",
        "early_stopping",
        "accuracy_plateau",
        "divergence",
        "lr_too_high",
        "prediction_collapse",
    ),
    level="severe",
    what="ReLU MLP at plain SGD lr 5.0 (100x too high), no clipping: the loss jumps to 1e7, "
    "every ReLU dies, the loss sits at chance",
    arch="MLP",
    optimizer="SGD",
    batch="64",
)
def mlp_lr_100x(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    task = data.digits()
    trace = train(root, "exploding_gradients.severe_mlp_sgd_lr_100x", model, opt, task, epochs=2)
    numbers, claims = _learned_nothing(trace, 10)
    more, dead = _dead(model, task.x, "2")
    numbers |= more | {
        "grad_norm_first": trace.grad_norm[0],
        "grad_norm_peak": max(trace.grad_norm),
    }
    claims |= dead | {
        "the gradient norm peaks > 1000x its first value": max(trace.grad_norm)
        > 1000 * trace.grad_norm[0]
    }
    return _truth(trace, numbers, claims)


def _vanishing_claims(model: nn.Module, task: Task) -> tuple[dict[str, float], dict[str, bool]]:
    """Call before training: the initial gradient of the first layer vs the largest."""
    norms = probes.layer_grad_norms(model, task.x[:256], task.y[:256])
    return {"first_layer_grad_norm_at_init": norms[0], "largest_grad_norm_at_init": max(norms)}, {
        "at init the first layer's gradient < 1e-3 of the largest layer's": norms[0]
        < 1e-3 * max(norms)
    }


@pathological(
    "vanishing_gradients.mild_mlp_5_sigmoid_layers_adam",
    expect=("vanishing_gradients",),
    also=("underfitting", "loss_not_decreasing"),
    level="mild",
    what="a 5-layer sigmoid MLP with Adam: it learns a little (Adam rescales the small "
    "gradients), the first layer's gradient is ~1e-4 of the last's at init",
    arch="MLP (sigmoid)",
    optimizer="Adam",
    batch="64",
)
def sigmoid_5(root: Path) -> Truth:
    model = sigmoid_mlp(depth=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    task = data.digits()
    at_init = _vanishing_claims(model, task)
    trace = train(
        root, "vanishing_gradients.mild_mlp_5_sigmoid_layers_adam", model, opt, task, epochs=6
    )
    return _truth(trace, *at_init)


class SigmoidCNN(nn.Sequential):
    """Six 3x3 convolutions with sigmoid activations and a linear head."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        for i in range(6):
            layers += [nn.Conv2d(1 if i == 0 else 16, 16, 3, padding=1), nn.Sigmoid()]
        super().__init__(*layers, nn.Flatten(), nn.Linear(16 * 64, 10))


@pathological(
    "vanishing_gradients.severe_cnn_6_sigmoid_layers",
    expect=("vanishing_gradients",),
    also=(
        "chance_level",  # a model that learned nothing predicts at chance
        "loss_not_decreasing",
        "saturated_activations",
        "update_ratio",
        "underfitting",
        "early_stopping",
        "accuracy_plateau",
        "prediction_collapse",
    ),
    level="severe",
    what="six sigmoid convolutions, SGD + momentum: the loss stays at chance",
    arch="CNN (sigmoid)",
    optimizer="SGD momentum",
    batch="64",
)
def sigmoid_cnn(root: Path) -> Truth:
    model = SigmoidCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    task = data.digits()
    at_init = _vanishing_claims(model, task)
    trace = train(
        root, "vanishing_gradients.severe_cnn_6_sigmoid_layers", model, opt, task, epochs=3
    )
    return _truth(trace, *at_init)


# -- updates and parameters ---------------------------------------------------------------------


@pathological(
    "update_ratio.mild_cnn_sgd_lr_1e-4",
    expect=("update_ratio",),
    also=("loss_not_decreasing", "underfitting", "early_stopping", "accuracy_plateau"),
    level="mild",
    what="the demo CNN at plain SGD lr 1e-4 (a few hundred times too low)",
    arch="CNN",
    optimizer="SGD",
    batch="64",
)
def cnn_lr_too_low(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    before = _snapshot(model)
    trace = train(root, "update_ratio.mild_cnn_sgd_lr_1e-4", model, opt, data.digits(), epochs=3)
    ratio = _update_ratio(model, before, trace.steps)["features.0.weight"]
    return _truth(
        trace,
        {"first_conv_change_per_step": ratio},
        {
            "the first conv's weight moves < 1e-5 of its norm per step": ratio < 1e-5,
        },
    )


@pathological(
    "stalled_parameters.mild_transformer_no_decay_group_forgotten",
    expect=("stalled_parameters",),
    level="mild",
    what="AdamW given only the weight-decay group (matrices): biases, LayerNorms and the "
    "positional embedding never move; the run still learns",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    task="digit rows",
    batch="64",
)
def transformer_no_decay_forgotten(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}], lr=3e-3)
    before = _snapshot(model)
    trace = train(
        root,
        "stalled_parameters.mild_transformer_no_decay_group_forgotten",
        model,
        opt,
        data.digit_rows(),
        epochs=6,
    )
    frozen = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    with_grad = [
        n
        for n in frozen
        if (p := dict(model.named_parameters())[n]).grad is not None
        and bool(p.grad.abs().sum() > 0)
    ]
    return _truth(
        trace,
        {"unchanged_params": len(frozen), "val_acc_last": trace.val_acc[-1]},
        {
            "the 1-D parameters are exactly as initialised": len(frozen) >= 10,
            "and they get gradients": len(with_grad) == len(frozen),
            "the run still learns (validation accuracy > 80%)": trace.val_acc[-1] > 0.8,
        },
    )


class GRUWithUnusedLayer(models.SequenceClassifier):
    """A GRU classifier with an attention scorer built in __init__ that forward never calls."""

    def __init__(self) -> None:
        super().__init__("gru", 8, 10)
        self.attention = nn.Linear(64, 1)


@pathological(
    "unused_parameters.mild_gru_unused_attention_layer",
    expect=("unused_parameters",),
    level="mild",
    what="a GRU classifier with an attention layer forward never calls (the run learns)",
    arch="GRU",
    optimizer="Adam",
    task="digit rows",
    batch="64",
)
def gru_unused_layer(root: Path) -> Truth:
    model = GRUWithUnusedLayer()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trace = train(
        root,
        "unused_parameters.mild_gru_unused_attention_layer",
        model,
        opt,
        data.digit_rows(),
        epochs=5,
    )
    without = [n for n, p in model.named_parameters() if p.grad is None]
    return _truth(
        trace,
        {"params_without_grad": len(without)},
        {
            "exactly the attention layer's 2 parameters never got a gradient": without
            == ["attention.weight", "attention.bias"],
        },
    )


# -- activations and initialisation -------------------------------------------------------------


@pathological(
    "dead_relu.mild_mlp_negative_bias_on_80_of_128",
    expect=("dead_relu",),
    level="mild",
    what="ReLU MLP whose first hidden layer has a -3 bias on 80 of its 128 units (the run "
    "still learns on the rest)",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def mlp_dead_mild(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    with torch.no_grad():
        model[1].bias[:80] -= 3.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    task = data.digits()
    trace = train(root, "dead_relu.mild_mlp_negative_bias_on_80_of_128", model, opt, task, epochs=4)
    numbers, claims = _dead(model, task.x, "2")
    claims["the run still learns (validation accuracy > 85%)"] = trace.val_acc[-1] > 0.85
    return _truth(trace, numbers | {"val_acc_last": trace.val_acc[-1]}, claims)


@pathological(
    "dead_relu.severe_mlp_adam_lr_100x",
    expect=("dead_relu",),
    also=("loss_spike", "update_ratio", "loss_oscillation", "lr_too_high"),
    level="severe",
    what="ReLU MLP at Adam lr 0.1 (100x the default): 90% of the first hidden layer dies "
    "in 6 steps",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def mlp_adam_lr_100x(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    task = data.digits()
    trace = train(root, "dead_relu.severe_mlp_adam_lr_100x", model, opt, task, epochs=4)
    return _truth(trace, *_dead(model, task.x, "2"))


class TanhCNN(nn.Sequential):
    """The demo CNN's shape with Tanh activations, every weight drawn from N(0, 1)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.Tanh(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(512, 64),
            nn.Tanh(),
            nn.Linear(64, 10),
        )
        for m in self:
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, std=1.0)


@pathological(
    "saturated_activations.severe_cnn_tanh_n01_init",
    expect=("saturated_activations",),
    also=("underfitting",),
    level="severe",
    what="a tanh CNN initialised N(0, 1): ~90% of the hidden tanh's outputs at +-1",
    arch="CNN (tanh)",
    optimizer="Adam",
    batch="64",
)
def tanh_cnn(root: Path) -> Truth:
    model = TanhCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    task = data.digits()
    trace = train(
        root, "saturated_activations.severe_cnn_tanh_n01_init", model, opt, task, epochs=3
    )
    saturated = probes.saturated_fractions(model, task.x)
    return _truth(
        trace,
        {f"saturated_share_{k}": v for k, v in saturated.items()},
        {
            "> 50% of the hidden tanh's outputs within 1e-3 of +-1": saturated["7"] > 0.5,
        },
    )


class ShrinkingCNN(nn.Sequential):
    """Six ReLU convolutions and a head, every weight 0.3x He: the signal shrinks ~3x per
    layer."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        for i in range(6):
            layers += [nn.Conv2d(1 if i == 0 else 16, 16, 3, padding=1), nn.ReLU()]
        super().__init__(*layers, nn.Flatten(), nn.Linear(16 * 64, 10))
        he_init(self, gain=0.3)


@pathological(
    "poor_initialization.severe_cnn_0.3x_he_6_layers",
    expect=("poor_initialization",),
    level="severe",
    what="six ReLU convolutions at 0.3x He init: the output std shrinks ~4000x with depth "
    "(the run recovers)",
    arch="CNN",
    optimizer="Adam",
    batch="64",
)
def cnn_shrinking_init(root: Path) -> Truth:
    model = ShrinkingCNN()
    task = data.digits()
    stds = probes.layer_output_stds(model, task.x)
    logs = [math.log(s) for s in stds]
    r = float(torch.corrcoef(torch.tensor([list(range(len(logs))), logs]))[0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(
        root, "poor_initialization.severe_cnn_0.3x_he_6_layers", model, opt, task, epochs=3
    )
    return _truth(
        trace,
        {
            "first_layer_std_at_init": stds[0],
            "last_layer_std_at_init": stds[-1],
            "log_std_vs_depth_r2": r * r,
        },
        {
            "at init the output std shrinks > 100x from first to last layer": stds[-1]
            < stds[0] / 100,
            "geometrically (r^2 >= 0.9)": r * r >= 0.9,
        },
    )


@pathological(
    "poor_initialization.mild_mlp_he_x2.5_7_layers",
    expect=("poor_initialization",),
    level="mild",
    what="a 7-layer ReLU MLP at 2.5x He init: the output std grows ~165x with depth (the "
    "scenario's 3x grows it ~700x)",
    arch="MLP",
    optimizer="Adam",
    batch="128",
)
def mlp_he_x2_5(root: Path) -> Truth:
    model = he_init(mlp((64,) + (64,) * 6 + (10,)), gain=2.5)
    task = data.digits()
    stds = probes.layer_output_stds(model, task.x)
    logs = [math.log(s) for s in stds]
    r = float(torch.corrcoef(torch.tensor([list(range(len(logs))), logs]))[0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(
        root,
        "poor_initialization.mild_mlp_he_x2.5_7_layers",
        model,
        opt,
        task,
        epochs=6,
        batch_size=128,
    )
    return _truth(
        trace,
        {"last_over_first_std_at_init": stds[-1] / stds[0], "log_std_vs_depth_r2": r * r},
        {
            "at init the output std grows > 100x from first to last layer": stds[-1]
            > 100 * stds[0],
            "geometrically (r^2 >= 0.9)": r * r >= 0.9,
        },
    )


@pathological(
    "poor_initialization.severe_mlp_zero_init",
    expect=("poor_initialization", "loss_not_decreasing"),
    also=(
        "chance_level",  # a model that learned nothing predicts at chance
        "dead_relu",
        "unused_parameters",
        "vanishing_gradients",
        "update_ratio",
        "early_stopping",
        "accuracy_plateau",
        "prediction_collapse",
    ),
    level="severe",
    what="ReLU MLP with every weight and bias zero: the output is a constant, only the last "
    "bias learns",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def mlp_zero_init(root: Path) -> Truth:
    model = mlp((64, 128, 128, 10))
    for p in model.parameters():
        nn.init.zeros_(p)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(
        root, "poor_initialization.severe_mlp_zero_init", model, opt, data.digits(), epochs=3
    )
    first10 = trace.train_loss[:10]
    spread = (max(first10) - min(first10)) / _median(first10)
    numbers, claims = _learned_nothing(trace, 10)
    return _truth(
        trace,
        numbers | {"first10_relative_spread": spread},
        claims
        | {
            "the first 10 losses stay within 0.1%": spread < 1e-3,
        },
    )


# -- system ------------------------------------------------------------------------------------


@pathological(
    "data_bottleneck.severe_gru_loader_sleeps_40ms",
    expect=("data_bottleneck",),
    level="severe",
    what="GRU over the digits' rows; the loader sleeps 40 ms per batch (a slow disk)",
    arch="GRU",
    optimizer="Adam",
    task="digit rows",
    batch="128",
)
def gru_slow_loader(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    trace = train(
        root,
        "data_bottleneck.severe_gru_loader_sleeps_40ms",
        model,
        opt,
        data.digit_rows(),
        epochs=2,
        batch_size=128,
        sleep_s=0.04,
    )
    shares = [w / s for w, s in zip(trace.wait_s, trace.step_s, strict=True)]
    return _truth(
        trace,
        {"median_wait_share": _median(shares)},
        {
            "the loop waits for the batch most of each step (median share > 0.5)": _median(shares)
            > 0.5,
        },
    )


# -- the classic mistakes, named after the bug (issue 16) -----------------------------------


def _true_validation(model: nn.Module, task: Task) -> tuple[float, float]:
    """The model's validation loss and accuracy in eval mode (what ``model.eval()`` would
    have logged); the model is left in training mode."""
    model.eval()
    with torch.no_grad():
        out = model(task.x_val)
    model.train()
    loss = nn.functional.cross_entropy(out, task.y_val)
    return float(loss), float((out.argmax(1) == task.y_val).float().mean())


def _eval_mode_gap(
    model: nn.Module, task: Task, trace: CorpusTrace
) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``missing_eval_mode``: the logged validation metrics (a training-mode
    forward: dropout on, BatchNorm normalising by the validation batch's own statistics)
    are not the model's: its eval-mode validation loss differs by > 25%."""
    loss, acc = _true_validation(model, task)
    logged = trace.val_loss[-1]
    return {
        "val_loss_logged": logged,
        "val_loss_in_eval_mode": loss,
        "val_acc_logged": trace.val_acc[-1],
        "val_acc_in_eval_mode": acc,
    }, {
        "the logged validation loss differs from the eval-mode one by > 25%": abs(logged - loss)
        > 0.25 * min(logged, loss),
    }


@pathological(
    "missing_eval_mode.severe_mlp_dropout_0.5",
    expect=("missing_eval_mode",),
    level="severe",
    what="ReLU MLP with dropout 0.5, Adam; validation under torch.no_grad() without "
    "model.eval(): dropout stays on, the logged accuracy is ~12 points below the model's",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def eval_mode_forgotten(root: Path) -> Truth:
    model = dropout_mlp((64, 128, 128, 10), 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    task = data.digits()
    trace = train(
        root,
        "missing_eval_mode.severe_mlp_dropout_0.5",
        model,
        opt,
        task,
        epochs=10,
        eval_mode=False,
    )
    numbers, claims = _eval_mode_gap(model, task, trace)
    claims["the logged validation accuracy is >= 5 points below the model's true one"] = (
        numbers["val_acc_in_eval_mode"] - numbers["val_acc_logged"] >= 0.05
    )
    return _truth(trace, numbers, claims)


@pathological(
    "missing_eval_mode.severe_cnn_batchnorm_dropout_0.5",
    expect=("missing_eval_mode",),
    level="severe",
    what="BatchNorm CNN with dropout 0.5 before its head, SGD + momentum; validation "
    "without model.eval(): the logged accuracy is ~15 points below the model's",
    arch="CNN + BatchNorm + dropout",
    optimizer="SGD momentum",
    batch="64",
)
def cnn_eval_mode_forgotten(root: Path) -> Truth:
    model = batchnorm_cnn(dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    task = data.digits()
    trace = train(
        root,
        "missing_eval_mode.severe_cnn_batchnorm_dropout_0.5",
        model,
        opt,
        task,
        epochs=4,
        eval_mode=False,
    )
    numbers, claims = _eval_mode_gap(model, task, trace)
    claims["the logged validation accuracy is >= 5 points below the model's true one"] = (
        numbers["val_acc_in_eval_mode"] - numbers["val_acc_logged"] >= 0.05
    )
    return _truth(trace, numbers, claims)


@pathological(
    "missing_eval_mode.mild_resnet_mlp_batchnorm_only",
    expect=("missing_eval_mode",),
    level="mild",
    what="a residual MLP with BatchNorm and no dropout, SGD + momentum; validation "
    "without model.eval(): BatchNorm normalises by the validation set's own statistics, "
    "the logged loss is half the model's (it looks better than it is)",
    arch="residual MLP (BatchNorm)",
    optimizer="SGD momentum",
    batch="64",
)
def resnet_mlp_eval_mode_forgotten(root: Path) -> Truth:
    model = models.ResidualMLP(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    task = data.digits()
    trace = train(
        root,
        "missing_eval_mode.mild_resnet_mlp_batchnorm_only",
        model,
        opt,
        task,
        epochs=4,
        eval_mode=False,
    )
    return _truth(trace, *_eval_mode_gap(model, task, trace))


@pathological(
    "missing_zero_grad.mild_gru_rmsprop",
    expect=("missing_zero_grad",),
    level="mild",
    what="GRU over the digits' rows, RMSprop, optimizer.zero_grad() never called: the "
    "gradient norm grows ~30x, RMSprop's normalisation hides it and the run still learns",
    arch="GRU",
    optimizer="RMSprop",
    task="digit rows",
    batch="64",
)
def gru_zero_grad_forgotten(root: Path) -> Truth:
    model = models.SequenceClassifier("gru", 8, 10)
    opt = torch.optim.RMSprop(model.parameters(), lr=2e-3)
    trace = train(
        root,
        "missing_zero_grad.mild_gru_rmsprop",
        model,
        opt,
        data.digit_rows(),
        epochs=4,
        zero_grad=False,
    )
    numbers, claims = _piles_up(trace)
    numbers["val_acc_last"] = trace.val_acc[-1]
    claims["the run still learns (validation accuracy > 90%)"] = trace.val_acc[-1] > 0.9
    return _truth(trace, numbers, claims)


@pathological(
    "missing_zero_grad.severe_transformer_adamw",
    expect=("missing_zero_grad",),
    also=(
        "loss_not_decreasing",
        "underfitting",
        "loss_oscillation",
        "exploding_gradients",
        "early_stopping",
        "accuracy_plateau",
    ),
    level="severe",
    what="pre-norm transformer over the digits' rows, AdamW, optimizer.zero_grad() never "
    "called: every step follows the sum of all gradients so far, the run stalls at ~25%",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    task="digit rows",
    batch="64",
)
def transformer_zero_grad_forgotten(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    trace = train(
        root,
        "missing_zero_grad.severe_transformer_adamw",
        model,
        opt,
        data.digit_rows(),
        epochs=4,
        zero_grad=False,
    )
    numbers, claims = _piles_up(trace)
    numbers["val_acc_best"] = max(trace.val_acc)
    claims["validation accuracy never reaches 50%"] = max(trace.val_acc) < 0.5
    return _truth(trace, numbers, claims)


def _at_chance(trace: CorpusTrace, classes: int) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``chance_level``: the training loss of the last fifth within 5% of
    ln(classes) (balanced classes: nothing learned, nothing memorised yet) and every
    validation accuracy within 5 points of 1/classes."""
    last, chance = _last(trace.train_loss), math.log(classes)
    return {
        "train_loss_last_fifth": last,
        "chance_loss": chance,
        "val_acc_best": max(trace.val_acc),
        "val_acc_last": trace.val_acc[-1],
    }, {
        "the last fifth's training loss is within 5% of ln C": abs(last - chance) <= 0.05 * chance,
        f"validation accuracy never above chance + 5 points ({1 / classes + 0.05:.2f})": max(
            trace.val_acc
        )
        <= 1 / classes + 0.05,
    }


@pathological(
    "chance_level.severe_mlp_adam_labels_shuffled",
    expect=("chance_level",),
    also=("loss_not_decreasing", "underfitting", "early_stopping", "accuracy_plateau"),
    level="severe",
    what="ReLU MLP, Adam, on the digits with the label arrays (train and validation) "
    "shuffled apart from the images: the loss sits at ln 10, accuracy at 10%",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def mlp_labels_shuffled(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    task = data.shuffled_labels(data.digits())
    trace = train(root, "chance_level.severe_mlp_adam_labels_shuffled", model, opt, task, epochs=4)
    return _truth(trace, *_at_chance(trace, 10))


@pathological(
    "chance_level.severe_transformer_adamw_labels_shuffled",
    expect=("chance_level",),
    also=("loss_not_decreasing", "underfitting", "early_stopping", "accuracy_plateau"),
    level="severe",
    what="pre-norm transformer over the digits' rows, AdamW, the label arrays shuffled "
    "apart from the inputs: the loss sits at ln 10, accuracy at 10%",
    arch="transformer (pre-norm)",
    optimizer="AdamW",
    task="digit rows",
    batch="64",
)
def transformer_labels_shuffled(root: Path) -> Truth:
    model = models.Transformer(10, features=8, length=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    task = data.shuffled_labels(data.digit_rows())
    trace = train(
        root, "chance_level.severe_transformer_adamw_labels_shuffled", model, opt, task, epochs=6
    )
    return _truth(trace, *_at_chance(trace, 10))


def _clipped_blow_up(trace: CorpusTrace, clip: float) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``lr_too_high`` under clipping: the training loss peaks > 3x its first
    value, and the gradient norm before clipping peaks > 10x the threshold and > 10x its
    own first value (after clipping it never exceeds the threshold: clipping hides it)."""
    loss, pre = trace.train_loss, trace.grad_norm_preclip
    return {
        "train_loss_first": loss[0],
        "train_loss_peak": max(loss),
        "train_loss_peak_step": 1 + loss.index(max(loss)),
        "grad_norm_preclip_first": pre[0],
        "grad_norm_preclip_peak": max(pre),
        "grad_norm_clipped_peak": max(trace.grad_norm),
    }, {
        "the training loss peaks > 3x its first value": max(loss) > 3 * loss[0],
        f"the pre-clip gradient norm peaks > 10x the threshold ({clip})": max(pre) > 10 * clip,
        "and > 10x its own first value": max(pre) > 10 * pre[0],
    }


@pathological(
    "lr_too_high.mild_mlp_gelu_adam_lr_100x_clipped",
    expect=("lr_too_high",),
    also=("loss_spike", "update_ratio"),
    level="mild",
    what="GELU MLP at Adam lr 0.1 (100x the default) with clipping at norm 1: the loss "
    "jumps ~25x in 3 steps, the pre-clip gradient norm to ~70; it recovers to ~90%",
    arch="MLP (GELU)",
    optimizer="Adam",
    batch="64",
)
def mlp_gelu_lr_100x_clipped(root: Path) -> Truth:
    model = he_init(mlp((64, 128, 128, 10), activation=nn.GELU))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    trace = train(
        root,
        "lr_too_high.mild_mlp_gelu_adam_lr_100x_clipped",
        model,
        opt,
        data.digits(),
        epochs=3,
        clip=1.0,
    )
    return _truth(trace, *_clipped_blow_up(trace, 1.0))


@pathological(
    "lr_too_high.severe_cnn_adamw_lr_100x_clipped",
    expect=("lr_too_high",),
    also=(
        "chance_level",  # a model that learned nothing predicts at chance
        "loss_not_decreasing",
        "dead_relu",
        "vanishing_gradients",
        "loss_spike",
        "update_ratio",
        "underfitting",
        "early_stopping",
        "accuracy_plateau",
        "prediction_collapse",
    ),
    level="severe",
    what="the demo CNN at AdamW lr 0.1 (100x the default) with clipping at norm 1: the "
    "loss jumps ~20x, the pre-clip gradient norm to ~125, then the net sits at chance",
    arch="CNN",
    optimizer="AdamW",
    batch="64",
)
def cnn_adamw_lr_100x_clipped(root: Path) -> Truth:
    model = SmallCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    trace = train(
        root,
        "lr_too_high.severe_cnn_adamw_lr_100x_clipped",
        model,
        opt,
        data.digits(),
        epochs=3,
        clip=1.0,
    )
    numbers, claims = _clipped_blow_up(trace, 1.0)
    numbers["val_acc_last"] = trace.val_acc[-1]
    claims["validation accuracy ends at chance (< 15%)"] = trace.val_acc[-1] < 0.15
    return _truth(trace, numbers, claims)


def _dead_before_relu(
    model: nn.Module, x: torch.Tensor, module: str
) -> tuple[dict[str, float], dict[str, bool]]:
    """The symptom of ``dead_relu`` behind a functional ReLU: > 50% of the units (features
    or channels) of ``module``, whose output forward feeds to ``F.relu``/``torch.relu``,
    are <= 0 on every example of ``x`` (and every position): never positive, never
    passed on, never given a gradient."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(module).register_forward_hook(
        lambda _m, _args, out: seen.append(out.detach())
    )
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    handle.remove()
    units = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1)
    share = float((units <= 0).all(dim=1).float().mean())
    return {f"dead_share_{module}": share}, {
        f"> 50% of the units {module} feeds to F.relu are never positive": share > 0.5
    }


@pathological(
    "dead_relu.mild_functional_mlp_negative_bias_100_of_128",
    expect=("dead_relu",),
    level="mild",
    what="an MLP calling F.relu in forward (no ReLU modules) whose first Linear has a -6 "
    "bias on 100 of its 128 units: they never fire; the run learns on the rest",
    arch="MLP (functional F.relu)",
    optimizer="SGD momentum",
    batch="64",
)
def functional_mlp_dead(root: Path) -> Truth:
    model = models.FunctionalMLP()
    he_init(model)
    with torch.no_grad():
        model.fc1.bias[:100] -= 6.0
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    task = data.digits()
    trace = train(
        root,
        "dead_relu.mild_functional_mlp_negative_bias_100_of_128",
        model,
        opt,
        task,
        epochs=5,
    )
    numbers, claims = _dead_before_relu(model, task.x, "fc1")
    claims["the run still learns (validation accuracy > 85%)"] = trace.val_acc[-1] > 0.85
    return _truth(trace, numbers | {"val_acc_last": trace.val_acc[-1]}, claims)


@pathological(
    "dead_relu.severe_functional_cnn_negative_bias_28_of_32",
    expect=("dead_relu",),
    level="severe",
    what="a CNN calling torch.relu/F.relu in forward (no ReLU modules) whose second "
    "convolution has a -6 bias on 28 of its 32 channels: they never fire",
    arch="CNN (functional torch.relu)",
    optimizer="RMSprop",
    batch="64",
)
def functional_cnn_dead(root: Path) -> Truth:
    model = models.FunctionalCNN()
    he_init(model)
    bias = model.conv2.bias
    assert bias is not None
    with torch.no_grad():
        bias[:28] -= 6.0
    opt = torch.optim.RMSprop(model.parameters(), lr=5e-4)
    task = data.digits()
    trace = train(
        root,
        "dead_relu.severe_functional_cnn_negative_bias_28_of_32",
        model,
        opt,
        task,
        epochs=3,
    )
    numbers, claims = _dead_before_relu(model, task.x, "conv2")
    return _truth(trace, numbers | {"val_acc_last": trace.val_acc[-1]}, claims)


Corrupt = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _until_it_raises(
    root: Path,
    name: str,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    task: Task,
    *,
    batch_size: int,
    bad_batch: int,
    corrupt: Corrupt,
) -> tuple[str, int, BaseException | None]:
    """Train ``model`` on ``task`` with the corpus's collector options until batch
    ``bad_batch``, which ``corrupt`` turns into what a classic mistake makes of it; the
    exception leaves the Collector's block and is caught here, as a user's script would
    end with it. (run id, optimizer steps taken, the exception)."""
    steps, run_id = 0, ""
    try:
        with Collector(root, name=name, model=model, optimizer=opt, **COLLECTOR_OPTIONS) as tel:
            run_id = tel.run_id
            for i in range(0, len(task.x), batch_size):
                x, y = task.x[i : i + batch_size], task.y[i : i + batch_size]
                if i // batch_size == bad_batch:
                    x, y = corrupt(x, y)
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                tel.log({"loss": loss}, split="train")
    except (RuntimeError, IndexError) as e:
        return run_id, steps, e
    return run_id, steps, None


def _failing_run(
    root: Path, name: str, model: nn.Module, task: Task, *, bad_batch: int, corrupt: str
) -> Truth:
    """A run that fails at batch ``bad_batch``: ``"shape"`` (the features of another
    dataset: 63 instead of 64) or ``"labels"`` (a label equal to the number of classes)."""

    def bad(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if corrupt == "shape":
            return x.flatten(1)[:, :63], y
        y = y.clone()
        y[0] = task.classes or 0
        return x, y

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run_id, steps, raised = _until_it_raises(
        root, name, model, opt, task, batch_size=32, bad_batch=bad_batch, corrupt=bad
    )
    claims = {
        "the run raised": raised is not None,
        f"it raised at batch {bad_batch}": steps == bad_batch,
    }
    return Truth(run_id, {"steps": steps}, claims)


@pathological(
    "run_failed.severe_mlp_wrong_input_shape",
    expect=("run_failed",),
    level="severe",
    what="an MLP for 64 features given a first batch of 63: it fails before training",
    arch="MLP",
    optimizer="SGD",
    batch="32",
)
def failed_shape_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    model = mlp((64, 64, 10))
    return _failing_run(
        root,
        "run_failed.severe_mlp_wrong_input_shape",
        model,
        data.digits(),
        bad_batch=0,
        corrupt="shape",
    )


@pathological(
    "run_failed.mild_cnn_label_out_of_range",
    expect=("run_failed",),
    level="mild",
    what="a CNN trained 20 steps, then a batch holding label 10 of a 10-class problem",
    arch="CNN",
    optimizer="SGD",
    batch="32",
)
def failed_labels_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    return _failing_run(
        root,
        "run_failed.mild_cnn_label_out_of_range",
        SmallCNN(0.25),
        data.digits(),
        bad_batch=20,
        corrupt="labels",
    )


def _data_parallel(root: Path, name: str, model: nn.Module, epochs: int) -> Truth:
    """A healthy training of ``model`` wrapped in ``nn.DataParallel`` (on this CPU-only
    machine DataParallel calls the module as it is: the loop is unchanged)."""
    wrapped = nn.DataParallel(model)
    opt = torch.optim.Adam(wrapped.parameters(), lr=2e-3)
    trace = train(root, name, wrapped, opt, data.digits(), epochs=epochs, batch_size=64)
    claims = {
        "the model handed to the Collector is DataParallel": True,
        "it learns (validation accuracy > 85%)": trace.val_acc[-1] > 0.85,
    }
    return _truth(trace, {"val_acc_last": trace.val_acc[-1]}, claims)


@pathological(
    "device_underused.mild_mlp_data_parallel",
    expect=("device_underused",),
    level="mild",
    what="a healthy MLP wrapped in nn.DataParallel (DistributedDataParallel is the advice)",
    arch="MLP (DataParallel)",
    optimizer="Adam",
    batch="64",
)
def data_parallel_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    return _data_parallel(root, "device_underused.mild_mlp_data_parallel", mlp(), 5)


@pathological(
    "device_underused.severe_cnn_data_parallel",
    expect=("device_underused",),
    level="severe",
    what="a healthy CNN wrapped in nn.DataParallel, as multi-GPU scripts still do",
    arch="CNN (DataParallel)",
    optimizer="Adam",
    batch="64",
)
def data_parallel_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    return _data_parallel(root, "device_underused.severe_cnn_data_parallel", SmallCNN(0.25), 3)


def _out_of_memory(root: Path, name: str, model: nn.Module, *, at_batch: int) -> Truth:
    """Train ``model`` on the digits until batch ``at_batch``, whose inputs the loop
    upsamples to 2^21 x 2^21 pixels (a resize meant for another dataset): the allocation,
    a pebibyte, fails at once (beyond any address space: no memory is touched)."""

    def upsampled(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nn.functional.interpolate(x, size=(2**21, 2**21)), y

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run_id, steps, raised = _until_it_raises(
        root,
        name,
        model,
        opt,
        data.digits(),
        batch_size=64,
        bad_batch=at_batch,
        corrupt=upsampled,
    )
    claims = {
        "the run ran out of memory": raised is not None and "allocate memory" in str(raised),
        f"at batch {at_batch}": steps == at_batch,
    }
    return Truth(run_id, {"steps": steps}, claims)


@pathological(
    "memory_pressure.severe_cnn_oom_before_training",
    expect=("memory_pressure", "run_failed"),
    level="severe",
    what="a CNN whose first batch is resized to 2^21 x 2^21: out of memory at once",
    arch="CNN",
    optimizer="Adam",
    batch="64",
)
def oom_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    return _out_of_memory(
        root, "memory_pressure.severe_cnn_oom_before_training", SmallCNN(0.25), at_batch=0
    )


@pathological(
    "memory_pressure.mild_mlp_oom_after_10_steps",
    expect=("memory_pressure", "run_failed"),
    level="mild",
    what="an MLP trained 10 steps, then a batch resized to 2^21 x 2^21: out of memory",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def oom_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    return _out_of_memory(root, "memory_pressure.mild_mlp_oom_after_10_steps", mlp(), at_batch=10)


def _raw_wine() -> Task:
    """scikit-learn's wine table as it comes: 13 features from ~0.1 (hue) to ~750
    (proline), not standardised."""
    from sklearn import datasets

    bunch = datasets.load_wine()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=gen)
    cut = int(len(x) * 0.8)
    train_idx, val_idx = order[:cut], order[cut:]
    return Task("wine_raw", x[train_idx], y[train_idx], x[val_idx], y[val_idx], classes=3)


@pathological(
    "unnormalized_inputs.mild_mlp_raw_wine_features",
    expect=("unnormalized_inputs",),
    also=("accuracy_plateau", "early_stopping"),  # the small-scale features barely move
    level="mild",
    what="an MLP on the wine table as it comes (proline in the hundreds beside hue ~1)",
    arch="MLP",
    optimizer="Adam",
    task="wine (raw)",
    batch="16",
)
def raw_wine_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    task = _raw_wine()
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(
        root,
        "unnormalized_inputs.mild_mlp_raw_wine_features",
        model,
        opt,
        task,
        epochs=20,
        batch_size=16,
    )
    stds = task.x.std(0)
    ratio = float(stds.max() / stds[stds > 0].min())
    claims = {"feature scales >= 100x apart": ratio >= 100}
    return _truth(trace, {"std_ratio": ratio}, claims)


@pathological(
    "unnormalized_inputs.severe_cnn_raw_255_pixels",
    expect=("unnormalized_inputs",),
    also=("underfitting",),  # Adam at 1e-4 on 0-255 inputs learns slowly
    level="severe",
    what="a CNN on the digits as 0-255 intensities (never scaled to [0, 1])",
    arch="CNN",
    optimizer="Adam",
    batch="64",
)
def raw_pixels_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    d = data.digits()
    task = Task("digits_255", d.x * 255, d.y, d.x_val * 255, d.y_val, classes=10)
    model = SmallCNN(0.25)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    trace = train(root, "unnormalized_inputs.severe_cnn_raw_255_pixels", model, opt, task, epochs=3)
    claims = {
        "pixels in [0, 255], never negative": float(task.x.min()) >= 0
        and float(task.x.max()) >= 200,
    }
    return _truth(trace, {"pixel_max": float(task.x.max())}, claims)


# -- issue 22: class imbalance and collapsed predictions -----------------------------------


def _rare_digits(keep: float, rare: tuple[int, ...] = (8, 9)) -> Task:
    """The digits with the ``rare`` classes' training examples cut to ``keep`` of them
    (the first ones); the validation set stays balanced, so each class's recall shows."""
    d = data.digits()
    mask = torch.ones(len(d.y), dtype=torch.bool)
    for k in rare:
        where = torch.nonzero(d.y == k).flatten()
        mask[where[max(1, math.ceil(len(where) * keep)) :]] = False
    return Task(f"digits_rare_{keep}", d.x[mask], d.y[mask], d.x_val, d.y_val, classes=10)


def _recalls(
    trace: CorpusTrace, model: nn.Module, task: Task, rare: tuple[int, ...]
) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        predicted = model(task.x_val).argmax(1)
    hit = predicted == task.y_val
    is_rare = torch.isin(task.y_val, torch.tensor(rare))
    counts = torch.bincount(task.y, minlength=10).float()
    return {
        "label_ratio": float(counts.max() / counts.min()),
        "rare_recall": float(hit[is_rare].float().mean()),
        "common_recall": float(hit[~is_rare].float().mean()),
        "val_acc_last": trace.val_acc[-1],
    }


def _imbalanced(root: Path, name: str, model: nn.Module, keep: float, epochs: int) -> Truth:
    task = _rare_digits(keep)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = train(root, name, model, opt, task, epochs=epochs, batch_size=64)
    numbers = _recalls(trace, model, task, (8, 9))
    claims = {
        "training labels >= 10x apart": numbers["label_ratio"] >= 10,
        "the rare classes recalled >= 0.2 less than the others": numbers["common_recall"]
        - numbers["rare_recall"]
        >= 0.2,
    }
    return _truth(trace, numbers, claims)


@pathological(
    "class_imbalance.mild_mlp_two_rare_digits",
    expect=("class_imbalance",),
    level="mild",
    what="an MLP on the digits with 8 and 9 cut to a twelfth of their examples, no class weights",
    arch="MLP",
    optimizer="Adam",
    batch="64",
)
def rare_digits_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return _imbalanced(root, "class_imbalance.mild_mlp_two_rare_digits", model, 1 / 12, 25)


@pathological(
    "class_imbalance.severe_cnn_two_nearly_absent_digits",
    expect=("class_imbalance",),
    level="severe",
    what="a CNN on the digits with 8 and 9 cut to a fortieth of their examples, no class weights",
    arch="CNN",
    optimizer="Adam",
    batch="64",
)
def rare_digits_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    return _imbalanced(
        root, "class_imbalance.severe_cnn_two_nearly_absent_digits", SmallCNN(), 1 / 40, 4
    )


def _collapse(trace: CorpusTrace, model: nn.Module, task: Task) -> Truth:
    model.eval()
    with torch.no_grad():
        out = model(task.x_val)
    if task.classes is None:
        ratio = float(out.reshape(-1).std() / task.y_val.reshape(-1).std())
        numbers = {"output_std_over_target_std": ratio}
        return _truth(trace, numbers, {"outputs vary < 0.1x the targets": ratio < 0.1})
    predicted = out.argmax(1)
    top = torch.bincount(predicted, minlength=task.classes).max()
    share = float(top) / len(predicted)
    numbers = {"top_class_share": share, "val_acc_last": trace.val_acc[-1]}
    return _truth(trace, numbers, {"one class >= 70% of the predictions": share >= 0.7})


@pathological(
    "prediction_collapse.mild_mlp_majority_under_weight_decay",
    expect=("prediction_collapse",),
    also=(
        "underfitting",
        "class_imbalance",
        "accuracy_plateau",
        "loss_not_decreasing",
        "chance_level",
    ),
    level="mild",
    what="an MLP under heavy weight decay on digits whose training set is two-thirds zeros: "
    "it predicts 0 for most of a balanced validation set",
    arch="MLP",
    optimizer="SGD",
    batch="64",
)
def majority_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    d = data.digits()
    zeros = torch.nonzero(d.y == 0).flatten().repeat(16)
    x, y = torch.cat([d.x, d.x[zeros]]), torch.cat([d.y, d.y[zeros]])
    task = Task("digits_mostly_zeros", x, y, d.x_val, d.y_val, classes=10)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=0.1)
    name = "prediction_collapse.mild_mlp_majority_under_weight_decay"
    trace = train(root, name, model, opt, task, epochs=3)
    return _collapse(trace, model, task)


@pathological(
    "prediction_collapse.severe_cnn_one_class_after_lr_blowup",
    expect=("prediction_collapse",),
    also=(
        "lr_too_high",
        "dead_relu",
        "chance_level",
        "loss_not_decreasing",
        "vanishing_gradients",
        "unused_parameters",
        "stalled_parameters",
        "underfitting",
        "loss_spike",
        "divergence",
        "exploding_gradients",
        "update_ratio",
    ),
    level="severe",
    what="a CNN whose first steps at SGD lr 2.0 leave it predicting one class for every input",
    arch="CNN",
    optimizer="SGD",
    batch="64",
)
def one_class_cnn(root: Path) -> Truth:
    torch.manual_seed(0)
    task = data.digits()
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    name = "prediction_collapse.severe_cnn_one_class_after_lr_blowup"
    trace = train(root, name, model, opt, task, epochs=2)
    return _collapse(trace, model, task)


@pathological(
    "prediction_collapse.severe_mlp_regression_predicts_the_mean",
    expect=("prediction_collapse",),
    also=(
        "dead_relu",
        "early_stopping",
        "underfitting",
        "loss_not_decreasing",
        "unused_parameters",
        "vanishing_gradients",
        "stalled_parameters",
        "accuracy_plateau",
    ),
    level="severe",
    what="a regression MLP whose hidden ReLUs all start dead (bias -10): only the output "
    "bias learns, so it predicts the targets' mean for every input",
    arch="MLP",
    optimizer="Adam",
    task="diabetes (regression)",
    batch="32",
)
def mean_regression_mlp(root: Path) -> Truth:
    torch.manual_seed(0)
    task = data.tabular("diabetes")
    model = nn.Sequential(nn.Linear(task.x.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    name = "prediction_collapse.severe_mlp_regression_predicts_the_mean"
    trace = train(root, name, model, opt, task, epochs=10, batch_size=32)
    return _collapse(trace, model, task)
