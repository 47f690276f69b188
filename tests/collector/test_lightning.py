"""The Lightning callback on a tiny LightningModule: a CPU fit of a few steps lands in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from analysis import open_store
from collector.budget import DENSE_STEPS
from integrations.lightning import TelemetryCallback
from store.schema import Stream

from .read_back import read_stream

BATCHES, EPOCHS = 4, 2

# Lightning's advice for real jobs, not faults of this tiny one.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    # torch 2.14 deprecates a pytree API lightning 2.6 still calls
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used.*"),
    pytest.mark.filterwarnings("ignore:.*TPU available but not used.*"),
]


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.grad_norms: list[float] = []  # of net.0.weight, as each step's backward left it

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grad = self.net[0].weight.grad
        assert grad is not None
        self.grad_norms.append(float(grad.double().norm()))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.hparams.fail_at is not None and self.global_step == self.hparams.fail_at:
            raise RuntimeError("loss went NaN")
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))
        self.log("val/mae", (self.net(x) - y).abs().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> DataLoader[Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8 * BATCHES, 4, generator=gen)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def fit(
    tmp_path: Path, model: Regressor, callback: TelemetryCallback, *, epochs: int = EPOCHS
) -> None:
    """``epochs`` epochs of ``BATCHES`` steps on the CPU, quietly."""
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path / "lightning",
        callbacks=[callback],
    )
    trainer.fit(model, loader(), loader())


def test_a_fit_records_losses_parameter_stats_and_its_end(tmp_path: Path) -> None:
    model = Regressor()
    callback = TelemetryCallback(tmp_path, name="lit", stats_every=1)
    fit(tmp_path, model, callback)
    assert callback.collector is not None
    run_dir = callback.collector.run_dir
    scalars = read_stream(run_dir, Stream.SCALARS).to_pylist()
    steps = BATCHES * EPOCHS
    train = [
        (r["step"], r["epoch"]) for r in scalars if (r["name"], r["split"]) == ("loss", "train")
    ]
    assert train == [(s, (s - 1) // BATCHES) for s in range(1, steps + 1)]
    for name in ("loss", "mae"):  # val_loss and val/mae: once per epoch, at its last step
        val = [(r["step"], r["epoch"]) for r in scalars if (r["name"], r["split"]) == (name, "val")]
        assert val == [(BATCHES, 0), (steps, 1)]
    assert [r["value"] for r in scalars if r["name"] == "lr"] == [0.05] * steps
    tensors = read_stream(run_dir, Stream.TENSORS).to_pylist()
    grads = {(r["param"], r["step"]) for r in tensors if r["kind"] == "grad"}
    # every row of a step carries its epoch as written (set_epoch at each epoch start)
    assert {(r["step"], r["epoch"]) for r in tensors} == {
        (s, (s - 1) // BATCHES) for s in range(1, steps + 1)
    }
    system = read_stream(run_dir, Stream.SYSTEM).to_pylist()
    assert [(r["step"], r["epoch"]) for r in system] == train
    params = ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert grads == {(p, s) for p in params for s in range(1, steps + 1)}
    # Lightning steps with a closure (the backward runs inside optimizer.step): the
    # gradients recorded at a step are that step's, not the previous one's.
    norms = [r["norm"] for r in tensors if (r["kind"], r["param"]) == ("grad", "net.0.weight")]
    assert norms == pytest.approx(model.grad_norms, rel=1e-6)
    modules = read_stream(run_dir, Stream.MODULES).to_pylist()
    assert {r["module"] for r in modules} >= {"net.0", "net.2"}
    with open_store(tmp_path) as store:
        (run,) = store.sql("SELECT name, status, steps, config FROM runs").to_dicts()
    assert (run["name"], run["status"], run["steps"]) == ("lit", "finished", steps)
    assert json.loads(run["config"]) == {"lr": 0.05, "fail_at": None}
    kinds = [r["kind"] for r in read_stream(run_dir, Stream.EVENTS).to_pylist()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


def test_an_exception_in_training_marks_the_run_failed(tmp_path: Path) -> None:
    callback = TelemetryCallback(tmp_path, name="boom")
    with pytest.raises(RuntimeError, match="loss went NaN"):
        fit(tmp_path, Regressor(fail_at=2), callback)
    assert callback.collector is not None
    events = read_stream(callback.collector.run_dir, Stream.EVENTS).to_pylist()
    assert events[-1]["kind"] == "run_failed"
    assert "loss went NaN" in events[-1]["payload"]


def test_a_training_step_calling_a_submodule_is_recorded_like_a_forward(tmp_path: Path) -> None:
    # Regressor.training_step calls self.net(x), never the module's own forward.
    callback = TelemetryCallback(tmp_path, name="net")
    epochs = DENSE_STEPS // BATCHES + 2
    fit(tmp_path, Regressor(), callback, epochs=epochs)
    assert callback.collector is not None
    run_dir = callback.collector.run_dir
    activations = read_stream(run_dir, Stream.ACTIVATIONS).to_pylist()
    assert {r["module"] for r in activations if r["step"] == 1} == {"net.0", "net.1", "net.2"}
    system = read_stream(run_dir, Stream.SYSTEM).to_pylist()
    timed = [r for r in system if r["step_time_s"] is not None]
    assert timed and all(r["batch_size"] == 8 for r in system)
    events = read_stream(run_dir, Stream.EVENTS).to_pylist()
    sampling = [r["step"] for r in events if r["kind"] == "sampling"]
    assert sampling and sampling[0] == DENSE_STEPS, "the overhead budget takes over"
    calls = {r["module"]: r["calls"] for r in read_stream(run_dir, Stream.MODULES).to_pylist()}
    assert calls["net"] == calls["net.0"] == 1, "called once a step: not shared weights"
