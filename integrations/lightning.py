"""PyTorch Lightning: one callback records a ``Trainer.fit`` into the store.

::

    from integrations.lightning import TelemetryCallback

    trainer = Trainer(max_epochs=10, callbacks=[TelemetryCallback("runs", name="mnist")])
    trainer.fit(model, train_loader, val_loader)
    # then: telemetry analyze runs/   |   telemetry report runs/

What it does, at ``on_fit_start`` (the optimizers exist by then):

* opens a ``Collector`` on the LightningModule and the first optimizer, so gradient,
  weight and update statistics, activations, the model summary, learning rate and
  step timing are recorded by the collector's own hooks, at optimizer steps (the
  store's ``step`` is ``trainer.global_step``); ``config`` defaults to the module's
  ``hparams`` (``save_hyperparameters()``). Whatever ``training_step`` calls is what is
  hooked: ``self(x)``, a submodule (``self.net(x)``), or several in turn
  (``self.encoder(x)``, then ``self.head(h)``): the collector takes the outermost
  module forwards that run as the step's forwards (``collector.hooks.OutermostForwards``);
* adds a logger to ``trainer.loggers`` that receives exactly what Lightning sends
  every logger: what ``self.log(...)`` logged (at Lightning's ``log_every_n_steps``
  for per-step values, at epoch ends for epoch values) and the hyperparameters.
  Metric names map to name and split as TensorBoard tags do (``integrations.tensorboard.tags``):
  ``train_loss`` -> loss/train, ``val_acc`` -> acc/val, ``val/loss`` -> loss/val; a
  ``_step`` suffix (``self.log(..., on_step=True, on_epoch=True)``) is dropped and
  an ``_epoch`` one kept (``train_loss_epoch`` -> loss_epoch/train). Lightning's
  ``epoch`` value becomes the rows' ``epoch``;
* marks each training epoch's start (``Collector.set_epoch``), so the statistics,
  timing and events of a step carry its epoch too. Added after every callback's
  ``setup``, so it never becomes the logger that decides where checkpoints go.

The run ends at ``on_fit_end`` (``run_finished``) or ``on_exception``
(``run_failed``, with the exception). Install with ``pip install telemetry[lightning]``;
both the ``lightning`` and the ``pytorch_lightning`` package names work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from collector.collector import Collector
from integrations.tensorboard.tags import metric_key

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
else:
    try:  # the unified package first; the standalone one is the same code under another name
        import lightning.pytorch as pl
        from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    except ImportError:
        try:
            import pytorch_lightning as pl
            from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
        except ImportError as e:
            raise ImportError(
                "integrations.lightning needs PyTorch Lightning: pip install 'telemetry[lightning]'"
            ) from e


class TelemetryCallback(pl.Callback):
    """Records a Lightning ``fit`` as one run of the store at ``root``.

    Arguments: ``root`` and ``name`` as for ``Collector``; ``config`` (default: the
    module's ``hparams``); any other ``Collector`` option (``stats_every``,
    ``activations_every``, ``include``...) is passed on.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "runs",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        **collector_options: Any,
    ) -> None:
        super().__init__()
        self.root = root
        self.name = name
        self.config = config
        self.collector_options = collector_options
        self.collector: Collector | None = None
        """The run of the current ``fit`` (None before ``on_fit_start``)."""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._close()  # a previous fit of the same callback
        optimizers = list(getattr(trainer, "optimizers", []) or [])
        config = self.config
        if config is None:
            datamodule = getattr(trainer, "datamodule", None)
            config = {**dict(getattr(datamodule, "hparams", {}) or {}), **dict(pl_module.hparams)}
        self.collector = Collector(
            self.root,
            self.name,
            config=config,
            model=pl_module,
            optimizer=optimizers[0] if optimizers else None,
            **self.collector_options,
        )
        # Without an optimizer (nothing steps the collector), Lightning's step labels rows.
        logger = _StoreLogger(self.collector, own_steps=not optimizers)
        trainer.loggers = [*trainer.loggers, logger]

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.collector is not None:  # every row of the epoch carries it
            self.collector.set_epoch(int(trainer.current_epoch))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close(error=exception)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._close()

    def _close(self, error: BaseException | None = None) -> None:
        if self.collector is not None:
            self.collector.close(error=error)


class _StoreLogger(Logger):
    """What Lightning logs, into the collector's run (one more entry of ``trainer.loggers``)."""

    def __init__(self, collector: Collector, *, own_steps: bool) -> None:
        super().__init__()
        self._collector = collector
        self._own_steps = own_steps

    @property
    def name(self) -> str:
        return "telemetry"

    @property
    def version(self) -> str:
        return self._collector.run_id

    @property
    def save_dir(self) -> str | None:
        return None  # never the place for checkpoints: Lightning's own default stays

    @property
    @rank_zero_experiment
    def experiment(self) -> Collector:
        return self._collector

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the module's and datamodule's ``hparams`` are the run's ``config`` already."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        epoch = metrics.get("epoch")
        by_split: dict[str | None, dict[str, float]] = {}
        for key, value in metrics.items():
            if key == "epoch":
                continue
            tag = key.removesuffix("_step") if key.endswith("_step") and len(key) > 5 else key
            name, split = metric_key(tag)
            by_split.setdefault(split, {})[name] = float(value)
        for split, values in by_split.items():
            self._collector.log(
                values,
                split=split,
                epoch=int(epoch) if epoch is not None else None,
                step=step if self._own_steps else None,
            )
