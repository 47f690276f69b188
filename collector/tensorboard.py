"""Deprecated: moved to ``integrations.tensorboard.writer`` (this path works for one release)."""

import warnings

from integrations.tensorboard.writer import *  # noqa: F403

warnings.warn(
    "collector.tensorboard moved to integrations.tensorboard.writer; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
