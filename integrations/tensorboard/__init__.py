"""The TensorBoard integration: ``SummaryWriter`` (a drop-in that writes a store) and the
importer of TensorBoard event files.

``from integrations.tensorboard import SummaryWriter`` imports torch when the name is
first touched, not before: the importer (``integrations.tensorboard.importer``) and the
tag rules (``integrations.tensorboard.tags``) stay torch-free for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrations.tensorboard.writer import SummaryWriter, UnsupportedError

__all__ = ["SummaryWriter", "UnsupportedError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from integrations.tensorboard import writer

        return getattr(writer, name)
    raise AttributeError(f"module 'integrations.tensorboard' has no attribute {name!r}")
