"""The labelled scenarios: real runs on scikit-learn's digits, healthy or broken on purpose.

Every scenario trains once with the collector attached (``harness.fit``), then measures
its own ground truth with the test's instruments (the loop's trace and ``probes``),
never through the store: a scenario that stopped exhibiting its pathology, or a healthy
run that stopped being healthy, fails its ``claims`` loudly instead of passing vacuously.

``rule`` is the pathology a run exhibits (None: healthy). ``also`` lists the rules its
pathology implies, which may fire with it (a loss that turns NaN is also a divergence);
anything else that fires on it is a false positive. Info findings count too: a rule is a
rule whatever its severity.

MLPs train on batches of 128 with 128-unit hidden layers, so that the model's own step,
not the collector's per-step statistics, dominates the step time: the collector reads
the step's end at the start of its post-step hook (``StepHooks._on_after_optimizer_step``
calls ``StepTimer.on_after_optimizer_step`` first), so the statistics it computes after
that count as the next step's data wait: 1.3-1.8 ms on these MLPs, 40-50 % of the
3-4 ms step of a 64-unit MLP on batches of 64, enough for ``data_bottleneck`` to fire on
a run that waits ~3 % for its data. The table printed by the suite shows each run's
data-wait share as the collector timed it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from telemetry import demo
from tests.scenarios import probes
from tests.scenarios.harness import Data, Trace, batchnorm_cnn, fit, he_init, mlp

LN10 = math.log(10)  # the cross-entropy of a uniform guess over the 10 digits
MLP_BATCH = 128


@dataclass
class Truth:
    """What the test measured about one trained scenario."""

    run_id: str
    numbers: dict[str, float] = field(default_factory=dict)
    claims: dict[str, bool] = field(default_factory=dict)

    def failed(self) -> list[str]:
        return [claim for claim, holds in self.claims.items() if not holds]


@dataclass(frozen=True)
class Scenario:
    name: str
    family: str
    rule: str | None
    also: frozenset[str]
    train: Callable[[Path, Data], Truth]
    what: str


SCENARIOS: list[Scenario] = []


def scenario(
    family: str, rule: str | None = None, *, also: tuple[str, ...] = (), what: str
) -> Callable[[Callable[[Path, Data], Truth]], Callable[[Path, Data], Truth]]:
    def register(train: Callable[[Path, Data], Truth]) -> Callable[[Path, Data], Truth]:
        SCENARIOS.append(Scenario(train.__name__, family, rule, frozenset(also), train, what))
        return train

    return register


# -- shared ground truth -----------------------------------------------------------------


def _healthy(trace: Trace) -> Truth:
    """A healthy run learns, generalises and ends near its best validation loss."""
    best = min(trace.val_loss)
    numbers = {
        "val_acc": trace.val_acc[-1],
        "train_loss_first": trace.train_loss[0],
        "train_loss_last5": probes.median(trace.train_loss[-5:]),
        "val_loss_best": best,
        "val_loss_last": trace.val_loss[-1],
        "grad_norm_max_over_median": max(trace.grad_norm) / probes.median(trace.grad_norm),
    }
    claims = {
        "validation accuracy >= 0.9": numbers["val_acc"] >= 0.9,
        "training loss fell by >= 80%": numbers["train_loss_last5"]
        <= 0.2 * numbers["train_loss_first"],
        "validation loss ends within 10% of its best": trace.val_loss[-1] <= 1.1 * best,
        "every loss finite": all(map(math.isfinite, trace.train_loss + trace.val_loss)),
    }
    return Truth(trace.run_id, numbers, claims)


def _mlp_fit(
    root: Path,
    name: str,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Data,
    *,
    epochs: int,
    **options: object,
) -> Trace:
    return fit(root, name, model, opt, data, epochs=epochs, batch_size=MLP_BATCH, **options)


# -- healthy: every model family --------------------------------------------------------


@scenario("MLP, Adam", what="ReLU MLP 64-128-128-10, He init, Adam 1e-3")
def healthy_mlp_adam(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _healthy(_mlp_fit(root, "healthy_mlp_adam", model, opt, data, epochs=8))


@scenario("MLP, BatchNorm, SGD", what="ReLU MLP with BatchNorm1d, SGD 0.05 + momentum 0.9")
def healthy_mlp_bn_sgd(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10), batchnorm=True))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return _healthy(_mlp_fit(root, "healthy_mlp_bn_sgd", model, opt, data, epochs=6))


@scenario("CNN, SGD", what="the demo CNN, SGD 0.02 + momentum 0.9")
def healthy_cnn_sgd(root: Path, data: Data) -> Truth:
    model = demo.SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    return _healthy(fit(root, "healthy_cnn_sgd", model, opt, data, epochs=5))


@scenario("CNN, BatchNorm, Adam", what="the demo CNN with BatchNorm2d (conv biases kept), Adam")
def healthy_cnn_bn_adam(root: Path, data: Data) -> Truth:
    model = batchnorm_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _healthy(fit(root, "healthy_cnn_bn_adam", model, opt, data, epochs=5))


# -- pathologies: one run per rule ------------------------------------------------------


def _demo(name: str, data: Data) -> tuple[nn.Module, torch.optim.Optimizer, Data, int]:
    """A demo scenario's model, optimizer, (scaled, subset) data and batch size."""
    spec = next(s for s in demo.SCENARIOS if s.name == name)
    model, opt = demo.build(spec)
    x, y, x_val, y_val = data
    if spec.train_subset is not None:
        x, y = x[: spec.train_subset], y[: spec.train_subset]
    scale = spec.input_scale
    return model, opt, (x * scale, y, x_val * scale, y_val), spec.batch_size


@scenario(
    "CNN, Adam",
    "overfitting",
    also=("early_stopping",),
    what="the demo's overfit run: 60 training images, no regularisation, 40 epochs",
)
def overfit(root: Path, data: Data) -> Truth:
    model, opt, subset, batch = _demo("overfit", data)
    trace = fit(root, "overfit", model, opt, subset, epochs=40, batch_size=batch)
    val, best_i = trace.val_loss, min(range(len(trace.val_loss)), key=trace.val_loss.__getitem__)
    per_epoch = len(trace.train_loss) // len(val)
    train_at_best = probes.median(trace.train_loss[best_i * per_epoch : (best_i + 1) * per_epoch])
    tail = sum(val[-3:]) / 3
    numbers = {
        "best_epoch": best_i,
        "val_loss_best": val[best_i],
        "val_loss_last3": tail,
        "train_loss_at_best": train_at_best,
        "train_loss_last": probes.median(trace.train_loss[-per_epoch:]),
        "train_acc_last": trace.train_acc[-1],
        "val_acc_last": trace.val_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "validation loss ends > 10% above its best": tail > 1.1 * val[best_i],
            "the best is >= 3 evaluations before the end": best_i <= len(val) - 4,
            "training loss kept falling (< 1/10 of its level at the best)": numbers[
                "train_loss_last"
            ]
            < 0.1 * train_at_best,
        },
    )


def patience_stop(val: list[float], *, patience: int = 5, min_delta: float = 0.01) -> int | None:
    """Where patience-based early stopping (Prechelt 1998; Keras' and Lightning's
    EarlyStopping) stops: the first evaluation ``patience`` after the last one that beat
    the best so far by ``min_delta`` (relative); None when training ran out first."""
    best, last_improved = math.inf, 0
    for i, v in enumerate(val):
        if v < best * (1 - min_delta):
            best, last_improved = v, i
        elif i - last_improved >= patience:
            return i
    return None


@scenario(
    "MLP, Adam",
    "early_stopping",
    what="converged in 8 epochs at lr 1e-2 (train acc > 99%), then 12 more at 1e-5",
)
def trained_too_long(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[8], gamma=1e-3)
    trace = _mlp_fit(root, "trained_too_long", model, opt, data, epochs=20, scheduler=sched)
    stop = patience_stop(trace.val_loss)
    numbers = {
        "stop_epoch": -1 if stop is None else stop,
        "epochs": len(trace.val_loss),
        "val_acc_at_stop": math.nan if stop is None else trace.val_acc[stop],
        "val_acc_last": trace.val_acc[-1],
        "val_loss_best": min(trace.val_loss),
        "val_loss_last": trace.val_loss[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "patience-5 early stopping stops >= 2 epochs before the end": (
                stop is not None and stop <= len(trace.val_loss) - 3
            ),
            "the epochs after it gain < 1 point of validation accuracy": (
                stop is not None and trace.val_acc[-1] - trace.val_acc[stop] < 0.01
            ),
            "validation loss ends within 10% of its best (not overfitting)": (
                trace.val_loss[-1] <= 1.1 * min(trace.val_loss)
            ),
        },
    )


@scenario(
    "MLP, Adam", "underfitting", what="a 1-unit bottleneck: ten digits squeezed through one number"
)
def too_small(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 1, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Batches of 256: the collector's per-step work would otherwise be ~half of this tiny
    # model's step, and read as data wait (see the module docstring).
    trace = fit(root, "too_small", model, opt, data, epochs=10, batch_size=256)
    last = len(trace.train_loss) // 10
    numbers = {
        "train_loss_first": trace.train_loss[0],
        "train_loss_last_epoch": probes.median(trace.train_loss[-last:]),
        "train_acc_last_epoch": sum(trace.train_acc[-last:]) / last,
        "val_acc_last": trace.val_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "training accuracy stays below 50%": numbers["train_acc_last_epoch"] < 0.5,
            "training loss keeps more than half its start": (
                numbers["train_loss_last_epoch"] > 0.5 * trace.train_loss[0]
            ),
            "validation accuracy within 5 points of training (no gap to blame)": (
                abs(trace.val_acc[-1] - numbers["train_acc_last_epoch"]) <= 0.05
            ),
        },
    )


@scenario(
    "MLP, SGD",
    "loss_not_decreasing",
    also=("early_stopping", "chance_level"),
    what="labels shuffled: nothing to learn, the loss stays at chance",
)
def shuffled_labels(root: Path, data: Data) -> Truth:
    x, y, x_val, y_val = data
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    trace = _mlp_fit(root, "shuffled_labels", model, opt, (x, y, x_val, y_val), epochs=8)
    tail = probes.median(trace.train_loss[-len(trace.train_loss) // 5 :])
    numbers = {
        "train_loss_last_fifth": tail,
        "chance_loss": LN10,
        "val_acc_last": trace.val_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "validation accuracy at chance (< 20%)": trace.val_acc[-1] < 0.2,
            "training loss stays at the chance level ln 10 (within 5%)": tail >= 0.95 * LN10,
        },
    )


SPIKES = (40, 70)


@scenario(
    "MLP, Adam",
    "loss_spike",
    what=f"healthy training; the batches of steps {SPIKES} carry random labels",
)
def corrupt_batches(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(2)

    def perturb(step: int, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (xb, torch.randint(0, 10, yb.shape, generator=gen)) if step in SPIKES else (xb, yb)

    trace = _mlp_fit(root, "corrupt_batches", model, opt, data, epochs=8, perturb=perturb)
    loss, numbers, claims = trace.train_loss, {}, {}
    for step in SPIKES:
        before = probes.median(loss[step - 21 : step - 1])
        after = max(loss[step + 2 : step + 6])
        numbers |= {
            f"loss_at_{step}": loss[step - 1],
            f"median_before_{step}": before,
            f"max_3_to_6_after_{step}": after,
        }
        claims[f"step {step}: loss >= 3x its previous 20-step median"] = (
            loss[step - 1] >= 3 * before
        )
        claims[f"step {step}: back under 1.5x that median 3-6 steps later"] = after < 1.5 * before
    numbers["first_spike_step"] = SPIKES[0]
    return Truth(trace.run_id, numbers, claims)


@scenario(
    "MLP, Adam",
    "divergence",
    also=("loss_not_decreasing",),
    what="Adam(maximize=True) by mistake: the optimizer climbs the loss",
)
def gradient_ascent(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, maximize=True)
    trace = _mlp_fit(root, "gradient_ascent", model, opt, data, epochs=4)
    first, last = probes.median(trace.train_loss[:5]), probes.median(trace.train_loss[-5:])
    return Truth(
        trace.run_id,
        {"train_loss_first5": first, "train_loss_last5": last},
        {
            "training loss ends > 2x where it started": last > 2 * first,
            "every loss finite (a divergence, not a NaN)": all(
                map(math.isfinite, trace.train_loss)
            ),
            "validation loss rose at every evaluation": all(
                b > a for a, b in zip(trace.val_loss, trace.val_loss[1:], strict=False)
            ),
        },
    )


@scenario(
    "CNN, SGD",
    "divergence",
    also=("exploding_gradients", "nonfinite", "update_ratio"),
    what="the demo CNN (LeakyReLU, He init) at SGD lr 1.0 + momentum 0.9: NaN within 10 steps",
)
def learning_rate_far_too_high(root: Path, data: Data) -> Truth:
    model = demo.SmallCNN(activation="leaky_relu")
    stds = probes.layer_output_stds(model, data[0])
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    trace = fit(root, "learning_rate_far_too_high", model, opt, data, epochs=2)
    first_bad = next(i + 1 for i, v in enumerate(trace.train_loss) if not math.isfinite(v))
    numbers = {
        "init_std_last_over_first": stds[-1] / stds[0],
        "loss_first": trace.train_loss[0],
        "loss_peak_finite": max(v for v in trace.train_loss if math.isfinite(v)),
        "first_nonfinite_step": first_bad,
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "the initialisation is sound (layer output stds within 10x of each other)": (
                max(stds) < 10 * min(stds)
            ),
            "the loss grew > 1000x before turning NaN within 10 steps": (
                numbers["loss_peak_finite"] > 1000 * trace.train_loss[0] and first_bad <= 10
            ),
        },
    )


@scenario(
    "MLP, Adam",
    "loss_oscillation",
    what="Adam at lr 0.03 on batches of 16: too large a step to settle",
)
def learning_rate_too_high(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10), activation=lambda: nn.LeakyReLU(0.1)))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    trace = fit(root, "learning_rate_too_high", model, opt, data, epochs=2, batch_size=16)
    tail = trace.train_loss[len(trace.train_loss) // 2 :]
    diffs = [b - a for a, b in zip(tail, tail[1:], strict=False)]
    flips = sum(1 for a, b in zip(diffs, diffs[1:], strict=False) if a * b < 0) / (len(diffs) - 1)
    jump = probes.median([abs(d) for d in diffs])
    start = probes.median(trace.train_loss[:10])
    numbers = {
        "median_step_to_step_jump": jump,
        "start_loss": start,
        "tail_median_loss": probes.median(tail),
        "sign_flip_share": flips,
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "over the last half the loss jumps by a median >= 10% of its start": jump
            >= 0.1 * start,
            "the jumps alternate in sign (zigzag: > half of them)": flips > 0.5,
        },
    )


DECAY_EPOCH = 3


@scenario(
    "MLP, Adam",
    "accuracy_plateau",
    also=("early_stopping", "update_ratio"),
    what=f"MultiStepLR cuts the learning rate 1000x after epoch {DECAY_EPOCH}, "
    "while accuracy is still rising",
)
def decayed_too_early(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[DECAY_EPOCH], gamma=1e-3)
    trace = _mlp_fit(root, "decayed_too_early", model, opt, data, epochs=14, scheduler=sched)
    acc = trace.val_acc  # one evaluation per epoch, the last before the cut at DECAY_EPOCH - 1
    at_cut, after = acc[DECAY_EPOCH - 1], acc[DECAY_EPOCH:]
    numbers = {
        "val_acc_before_cut": acc[DECAY_EPOCH - 2],
        "val_acc_at_cut": at_cut,
        "val_acc_best_after": max(after),
        "evaluations_after_cut": len(after),
        "train_acc_last": trace.train_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "validation accuracy still rose >= 1 point in the epoch before the cut": (
                at_cut - acc[DECAY_EPOCH - 2] >= 0.01
            ),
            "and gains < 0.5 points in the >= 10 evaluations after it": (
                max(after) - at_cut < 0.005 and len(after) >= 10
            ),
            "training accuracy below 99% (not converged)": trace.train_acc[-1] < 0.99,
        },
    )


NAN_IMAGE = 100  # index of the training image with a NaN pixel


@scenario(
    "CNN, Adam",
    "nonfinite",
    also=("divergence",),
    what="one training image has a NaN pixel (a corrupt sample)",
)
def nan_in_data(root: Path, data: Data) -> Truth:
    x, y, x_val, y_val = data
    x = x.clone()
    x[NAN_IMAGE, 0, 3, 4] = math.nan
    model = demo.SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # where the NaN image lands: the harness's first epoch order (seeded generator)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    nan_step = int((order == NAN_IMAGE).nonzero()) // 64 + 1
    trace = fit(root, "nan_in_data", model, opt, (x, y, x_val, y_val), epochs=2)
    first_bad = next(i + 1 for i, v in enumerate(trace.train_loss) if not math.isfinite(v))
    numbers = {"nan_batch_step": nan_step, "first_nonfinite_step": first_bad}
    return Truth(
        trace.run_id,
        numbers,
        {
            "the loss turns NaN exactly at the NaN image's batch": first_bad == nan_step,
        },
    )


@scenario(
    "MLP, SGD",
    "vanishing_gradients",
    also=("loss_not_decreasing", "update_ratio", "chance_level"),
    what="the demo's 12-layer sigmoid MLP, plain SGD",
)
def deep_sigmoid(root: Path, data: Data) -> Truth:
    model, opt, scaled, batch = _demo("vanishing", data)
    trace = fit(root, "deep_sigmoid", model, opt, scaled, epochs=4, batch_size=batch)
    norms = probes.layer_grad_norms(model, scaled[0][:256], scaled[1][:256])
    numbers = {
        "first_layer_grad_norm": norms[0],
        "last_layer_grad_norm": norms[-1],
        "first_to_last": norms[0] / norms[-1],
        "val_acc_last": trace.val_acc[-1],
    }
    rising = sum(1 for a, b in zip(norms, norms[1:], strict=False) if a < b)
    return Truth(
        trace.run_id,
        numbers,
        {
            "first layer's gradient < 1e-3 of the last layer's": norms[0] < 1e-3 * norms[-1],
            "it grows layer by layer towards the output (>= 10 of 12 steps)": rising >= 10,
        },
    )


@scenario(
    "CNN, SGD",
    "exploding_gradients",
    also=("divergence", "nonfinite", "update_ratio", "unnormalized_inputs"),
    what="the demo's exploding run: raw 0-16 pixels, LeakyReLU, SGD 0.1 + momentum 0.9",
)
def unnormalised_inputs(root: Path, data: Data) -> Truth:
    model, opt, scaled, batch = _demo("exploding", data)
    trace = fit(root, "unnormalised_inputs", model, opt, scaled, epochs=4, batch_size=batch)
    finite = [g for g in trace.grad_norm if math.isfinite(g)]
    start = probes.median(trace.grad_norm[:10])
    numbers = {
        "grad_norm_first10_median": start,
        "grad_norm_peak_finite": max(finite),
        "peak_over_start": max(finite) / start,
        "first_nonfinite_grad_step": next(
            (i + 1 for i, g in enumerate(trace.grad_norm) if not math.isfinite(g)), -1
        ),
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "the gradient norm grew > 100x its start before overflowing": (
                numbers["peak_over_start"] > 100
            ),
            "the gradients end non-finite": numbers["first_nonfinite_grad_step"] > 0,
        },
    )


@scenario(
    "MLP, Adam",
    "update_ratio",
    what="a param-group typo: the body's learning rate is 1e-7, the head's 1e-2",
)
def learning_rate_typo(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))
    head = list(model[-1].parameters())
    body = [p for p in model.parameters() if all(p is not h for h in head)]
    opt = torch.optim.Adam([{"params": body, "lr": 1e-7}, {"params": head}], lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    trace = _mlp_fit(root, "learning_rate_typo", model, opt, data, epochs=4)
    steps = len(trace.train_loss)
    moved = [
        float((p.detach() - b).norm() / b.norm()) / steps
        for p, b in zip(model.parameters(), before, strict=True)
        if b.norm() > 0
    ]
    first_weight = float((model[1].weight.detach() - before[0]).norm() / before[0].norm()) / steps
    numbers = {
        "first_weight_change_per_step": first_weight,
        "largest_change_per_step": max(moved),
        "val_acc_last": trace.val_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "the first layer's weight moves < 1e-5 of its norm per step": first_weight < 1e-5,
            "the head still learns (validation accuracy > 50%)": trace.val_acc[-1] > 0.5,
        },
    )


@scenario(
    "MLP, Adam",
    "stalled_parameters",
    what="the head is appended after the optimizer was built: it gets gradients, never moves",
)
def head_not_in_optimizer(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64, 128, 128, 10)))[:-1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.append(he_init(nn.Linear(128, 10)))
    head = model[-1].weight.detach().clone()
    trace = _mlp_fit(root, "head_not_in_optimizer", model, opt, data, epochs=4)
    grads = probes.layer_grad_norms(model, data[0][:256], data[1][:256])
    numbers = {
        "head_grad_norm": grads[-1],
        "head_max_abs_change": float((model[-1].weight.detach() - head).abs().max()),
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "the head gets a gradient": grads[-1] > 0,
            "the head's weights are exactly as initialised": numbers["head_max_abs_change"] == 0.0,
        },
    )


class WithAuxHead(nn.Module):
    """An MLP with an auxiliary head built in __init__ that forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.body = he_init(mlp((64, 128, 128, 10)))
        self.aux_head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@scenario("MLP, Adam", "unused_parameters", what="an auxiliary head that forward never calls")
def unused_branch(root: Path, data: Data) -> Truth:
    model = WithAuxHead()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = _mlp_fit(root, "unused_branch", model, opt, data, epochs=4)
    without = [n for n, p in model.named_parameters() if p.grad is None]
    return Truth(
        trace.run_id,
        {"params_without_grad": len(without)},
        {
            "exactly the aux head's 2 parameters never got a gradient": without
            == ["aux_head.weight", "aux_head.bias"],
        },
    )


@scenario(
    "CNN, Adam",
    "dead_relu",
    what="the demo's dead_relu run: a -4 bias on 3/4 of the hidden linear units",
)
def negative_bias(root: Path, data: Data) -> Truth:
    model, opt, scaled, batch = _demo("dead_relu", data)
    trace = fit(root, "negative_bias", model, opt, scaled, epochs=4, batch_size=batch)
    dead = probes.dead_relu_fractions(model, scaled[0])
    return Truth(
        trace.run_id,
        {f"dead_share_{k}": v for k, v in dead.items()},
        {
            "> 50% of the hidden ReLU's units never fire on the training set": (
                dead["classifier.2"] > 0.5
            ),
        },
    )


@scenario(
    "MLP, Adam",
    "saturated_activations",
    what="a tanh MLP initialised N(0, 1) (CS231n's 'too large' init)",
)
def tanh_large_init(root: Path, data: Data) -> Truth:
    model = mlp((64, 128, 128, 10), activation=nn.Tanh)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = _mlp_fit(root, "tanh_large_init", model, opt, data, epochs=4)
    saturated = probes.saturated_fractions(model, data[0])
    return Truth(
        trace.run_id,
        {f"saturated_share_{k}": v for k, v in saturated.items()},
        {
            "> 50% of the second hidden tanh's outputs within 1e-3 of +-1": saturated["4"] > 0.5,
        },
    )


@scenario(
    "MLP, Adam",
    "poor_initialization",
    what="a 7-layer ReLU MLP with He init x3: each layer multiplies the std by ~2.7",
)
def init_too_large(root: Path, data: Data) -> Truth:
    model = he_init(mlp((64,) + (64,) * 6 + (10,)), gain=3.0)
    stds = probes.layer_output_stds(model, data[0])
    logs = [math.log(s) for s in stds]
    r = statistics.correlation(list(range(len(logs))), logs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = _mlp_fit(root, "init_too_large", model, opt, data, epochs=6)
    numbers = {
        "first_layer_std_at_init": stds[0],
        "last_layer_std_at_init": stds[-1],
        "last_over_first": stds[-1] / stds[0],
        "log_std_vs_depth_r2": r * r,
        "val_acc_last": trace.val_acc[-1],
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "at init the output std grows > 100x from first to last layer": stds[-1]
            > 100 * stds[0],
            "geometrically (log std linear in depth, r^2 >= 0.9)": r * r >= 0.9,
        },
    )


class SlowDigits(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Digits with a per-sample random rotation done in __getitem__, on the main process
    (DataLoader num_workers=0): the batch is decoded while the model waits."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> None:
        self.x, self.y = x, y
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        angle = float(torch.empty(()).uniform_(-0.3, 0.3, generator=self.gen))
        c, s = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]])
        big = nn.functional.interpolate(self.x[i : i + 1], scale_factor=4, mode="bilinear")
        grid = nn.functional.affine_grid(theta, list(big.shape), align_corners=False)
        rotated = nn.functional.grid_sample(big, grid, align_corners=False)
        return nn.functional.avg_pool2d(rotated, 4)[0], self.y[i]


@scenario(
    "MLP, Adam",
    "data_bottleneck",
    what="per-sample augmentation in Dataset.__getitem__, DataLoader(num_workers=0)",
)
def slow_loader(root: Path, data: Data) -> Truth:
    x, y, _, _ = data
    loader = DataLoader(
        SlowDigits(x, y),
        batch_size=MLP_BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    model = he_init(mlp((64, 128, 128, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trace = _mlp_fit(root, "slow_loader", model, opt, data, epochs=3, batches=lambda e: loader)
    shares = [w / s for w, s in zip(trace.wait_s, trace.step_s, strict=True)]
    numbers = {
        "median_wait_share": probes.median(shares),
        "median_wait_ms": 1e3 * probes.median(trace.wait_s),
    }
    return Truth(
        trace.run_id,
        numbers,
        {
            "the loop waits for the batch most of each step (median share > 0.5)": (
                numbers["median_wait_share"] > 0.5
            ),
        },
    )
