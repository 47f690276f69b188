"""The demo: six small runs on scikit-learn's bundled handwritten digits.

``healthy`` trains a small CNN well; the other five are broken on purpose, each
in the way the seed tutorial describes, so that the diagnostics have something
to find:

    overfit     60 training images, no dropout or weight decay, many epochs
    vanishing   a 12-layer sigmoid MLP (gradients shrink layer by layer)
    dead_relu   the CNN with a -4 bias on 3/4 of the hidden linear layer's units: those
                ReLU units never fire, get no gradient and stay dead
    exploding   the CNN on raw 0-16 pixel values (no input normalisation), LeakyReLU,
                a large SGD step with momentum: gradients grow, then overflow to NaN
    imbalanced  the CNN with digits 8 and 9 cut to a twentieth of their training
                images (no class weights): it learns the other eight and misses them

Every run logs its predictions (``tel.log_predictions``): the training batches' at
each step, the validation set's at each epoch, for the confusion matrix.

After training, the healthy CNN's export formats are benchmarked into its run
(``exports.benchmark``: TorchScript, torch.export, ONNX Runtime, int8, pruned, bf16),
with the validation accuracy of each; ``train_and_benchmark`` does only that run
(``telemetry export-bench --demo``).

The digits (1,797 8x8 images) ship inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from collector import Collector

if TYPE_CHECKING:
    from exports.benchmark import ExportBenchmark
    from store.location import StorePath

Progress = Callable[[str], None]
Tick = Callable[[str], None]
"""Called after every epoch of a demo run with a short note (the run, its val loss)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str  # "cnn" | "sigmoid_mlp"
    optimizer: str  # "adam" | "sgd"
    lr: float
    epochs: int
    batch_size: int = 64
    train_subset: int | None = None
    dropout: float = 0.0
    weight_decay: float = 0.0
    init_gain: float = 1.0
    momentum: float = 0.0
    input_scale: float = 1.0  # 16.0 feeds raw 0-16 pixel values: no input normalisation
    activation: str = "relu"
    dead_bias: float = 0.0  # added to 3/4 of the hidden linear units' bias (the CNN only)
    rare_keep: float = 1.0  # the share of the training images of digits 8 and 9 kept
    he_init: bool = True
    export_bench: bool = False  # benchmark the trained model's export formats into the run
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "model": self.model,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "train_subset": self.train_subset,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
            "init_gain": self.init_gain,
            "momentum": self.momentum,
            "input_scale": self.input_scale,
            "activation": self.activation,
            "dead_bias": self.dead_bias,
            "he_init": self.he_init,
            "rare_keep": self.rare_keep,
        }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "healthy",
        "cnn",
        "adam",
        lr=2e-3,
        epochs=12,
        dropout=0.25,
        weight_decay=1e-4,
        export_bench=True,
        description="small CNN, Adam, dropout and weight decay; then an export benchmark",
    ),
    Scenario(
        "overfit",
        "cnn",
        "adam",
        lr=3e-3,
        epochs=60,
        batch_size=20,
        train_subset=60,
        description="60 training images, no regularisation, 60 epochs",
    ),
    Scenario(
        "vanishing",
        "sigmoid_mlp",
        "sgd",
        lr=0.05,
        epochs=8,
        description="12-layer sigmoid MLP, plain SGD",
    ),
    Scenario(
        "dead_relu",
        "cnn",
        "adam",
        lr=2e-3,
        epochs=6,
        dead_bias=-4.0,
        description="-4 bias on 3/4 of the hidden units: their ReLUs never fire",
    ),
    Scenario(
        "exploding",
        "cnn",
        "sgd",
        lr=0.1,
        epochs=4,
        momentum=0.9,
        input_scale=16.0,
        activation="leaky_relu",
        he_init=False,
        description="unnormalised inputs, LeakyReLU, large SGD step with momentum",
    ),
    Scenario(
        "imbalanced",
        "cnn",
        "adam",
        lr=2e-3,
        epochs=6,
        rare_keep=1 / 20,
        description="digits 8 and 9 cut to a twentieth of their training images",
    ),
)

RARE_DIGITS = (8, 9)
"""The classes ``Scenario.rare_keep`` thins out."""


class SmallCNN(nn.Module):
    """Two 3x3 conv layers and two linear layers: ~42k parameters, ~4 ms/step at batch 64."""

    def __init__(
        self, dropout: float = 0.0, activation: str = "relu", he_init: bool = True
    ) -> None:
        super().__init__()

        def act() -> nn.Module:
            return nn.LeakyReLU(0.1) if activation == "leaky_relu" else nn.ReLU()

        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            act(),
            nn.Conv2d(16, 32, 3, padding=1),
            act(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            act(),
            nn.Dropout(dropout),
            nn.Linear(64, 10),
        )

        # He initialisation (seed part 3): PyTorch's default leaves ~40% of the hidden
        # ReLUs silent on every example from step 1, which dead_relu rightly reports.
        for m in self.modules() if he_init else ():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def sigmoid_mlp(depth: int = 12, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 64
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.Sigmoid()]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def load_digits_tensors(
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): 80/20 split, pixels in [0, 1], shape N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits  # ~0.5 s import; only the demo needs it

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build(scenario: Scenario) -> tuple[nn.Module, torch.optim.Optimizer]:
    model: nn.Module = (
        SmallCNN(scenario.dropout, scenario.activation, scenario.he_init)
        if scenario.model == "cnn"
        else sigmoid_mlp()
    )
    if scenario.dead_bias and isinstance(model, SmallCNN):
        hidden = model.classifier[1]
        assert isinstance(hidden, nn.Linear)
        with torch.no_grad():
            hidden.bias[: hidden.out_features * 3 // 4] += scenario.dead_bias
    if scenario.init_gain != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scenario.init_gain)
    if scenario.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=scenario.lr, weight_decay=scenario.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=scenario.lr,
            momentum=scenario.momentum,
            weight_decay=scenario.weight_decay,
        )
    return model, opt


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def train(
    scenario: Scenario,
    root: StorePath,
    *,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int = 0,
    progress: Progress | None = None,
    tick: Tick | None = None,
) -> str:
    """Train one scenario with the collector attached; return its run id."""
    trained = _trained(scenario, root, data=data, seed=seed, progress=progress, tick=tick)
    with trained as (model, tel, val):
        if scenario.export_bench:
            export_benchmark(model, tel, *val, progress=progress)
        return tel.run_id


def train_and_benchmark(
    root: StorePath, *, seed: int = 0, progress: Progress | None = None, **options: Any
) -> ExportBenchmark:
    """Train the healthy demo CNN into ``root``, then benchmark its exports into that run.

    ``options`` go to ``exports.benchmark.benchmark`` (formats, batch_sizes, repeats...).
    """
    scenario = SCENARIOS[0]
    data = load_digits_tensors(seed)
    with _trained(scenario, root, data=data, seed=seed, progress=progress) as (model, tel, val):
        return export_benchmark(model, tel, *val, progress=progress, **options)


@contextlib.contextmanager
def _trained(
    scenario: Scenario,
    root: StorePath,
    *,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int,
    progress: Progress | None,
    tick: Tick | None = None,
) -> Iterator[tuple[nn.Module, Collector, tuple[torch.Tensor, torch.Tensor]]]:
    """The trained model, its still-open collector and the (scaled) validation set."""
    torch.manual_seed(seed)
    x_train, y_train, x_val, y_val = data
    x_train, x_val = x_train * scenario.input_scale, x_val * scenario.input_scale
    if scenario.train_subset is not None:
        x_train, y_train = x_train[: scenario.train_subset], y_train[: scenario.train_subset]
    if scenario.rare_keep < 1.0:
        x_train, y_train = _thinned(x_train, y_train, scenario.rare_keep)
    model, opt = build(scenario)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    with Collector(
        root, name=scenario.name, config=scenario.config(), model=model, optimizer=opt
    ) as tel:
        for epoch in range(scenario.epochs):
            model.train()
            for xb, yb in _batches(x_train, y_train, scenario.batch_size, gen):
                opt.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = loss_fn(logits, yb)
                loss.backward()
                opt.step()
                acc = (logits.argmax(1) == yb).float().mean()
                tel.log({"loss": loss, "acc": acc}, split="train", epoch=epoch)
                tel.log_predictions(yb, logits.detach(), split="train", epoch=epoch)
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = loss_fn(logits, y_val)
                val_acc = (logits.argmax(1) == y_val).float().mean()
            tel.log({"loss": val_loss, "acc": val_acc}, split="val", epoch=epoch)
            tel.log_predictions(y_val, logits, split="val", epoch=epoch)
            if tick is not None:
                tick(f"{scenario.name} val loss {float(val_loss):.3f}")
            every = max(1, scenario.epochs // 6)
            if progress is not None and ((epoch + 1) % every == 0 or epoch + 1 == scenario.epochs):
                progress(
                    f"  {scenario.name:<10} epoch {epoch + 1:>3}/{scenario.epochs}  "
                    f"step {tel.step:>4}  train loss {float(loss.detach()):8.4f}  "
                    f"val loss {float(val_loss):8.4f}  val acc {float(val_acc):.3f}"
                )
        yield model, tel, (x_val, y_val)


def _thinned(x: torch.Tensor, y: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x, y`` with the first ``keep`` share (at least one) of each rare digit's examples."""
    mask = torch.ones(len(y), dtype=torch.bool)
    for digit in RARE_DIGITS:
        where = torch.nonzero(y == digit).flatten()
        mask[where[max(1, round(len(where) * keep)) :]] = False
    return x[mask], y[mask]


def export_benchmark(
    model: nn.Module,
    run: Collector,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> ExportBenchmark:
    """Benchmark the trained model's export formats into ``run`` (accuracy on the val set).

    ``options`` go to ``exports.benchmark.benchmark`` (formats, batch_sizes, repeats...).
    """
    from exports.benchmark import benchmark  # the exporters import onnx and friends lazily

    if progress is not None:
        progress("  export benchmark: eager, TorchScript, torch.export, ONNX Runtime, int8...")
    result = benchmark(model, x_val[:32], run=run, eval_data=(x_val, y_val), **options)
    if progress is not None:
        failed = ", ".join(sorted({r.format for r in result.failed()})) or "none"
        formats = len({r.format for r in result.results})
        progress(f"  export benchmark: {formats} formats measured, failed: {failed}")
    return result


def run_demo(
    root: StorePath,
    *,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    progress: Progress | None = None,
    tick: Tick | None = None,
) -> list[str]:
    """Train every scenario into ``root``; return the run ids in order.

    ``progress`` gets status lines; ``tick`` is called after every epoch (a bar's
    total is ``sum(s.epochs for s in scenarios)``)."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    data = load_digits_tensors()
    run_ids = []
    for scenario in scenarios:
        if progress is not None:
            progress(f"{scenario.name}: {scenario.description}")
        run_ids.append(train(scenario, root, data=data, progress=progress, tick=tick))
    return run_ids
