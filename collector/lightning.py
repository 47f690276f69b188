"""Deprecated: moved to ``integrations.lightning`` (this path works for one release)."""

import warnings

from integrations.lightning import *  # noqa: F403

warnings.warn(
    "collector.lightning moved to integrations.lightning; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
