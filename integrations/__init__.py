"""integrations: telemetry for code written against other tools' APIs.

``integrations.tensorboard``: ``SummaryWriter``, a drop-in for
``torch.utils.tensorboard.SummaryWriter`` that writes a store, and the importer of old
TensorBoard event files (``telemetry import tensorboard``). ``integrations.lightning``:
``TelemetryCallback`` for PyTorch Lightning. They record through ``collector.Collector``'s
public API (``record``, ``log``) and the ``store`` format; nothing here touches a
collector's private state.
"""
