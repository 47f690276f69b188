"""Deprecated: the error tree moved to ``store.errors`` (this path works for one release)."""

import warnings

from store.errors import *  # noqa: F403
from store.errors import ConfigError, StoreError, TelemetryError  # noqa: F401

warnings.warn(
    "collector.errors moved to store.errors; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
