"""Deprecated: moved to ``exports.benchmark`` (this path works for one release)."""

import warnings

from exports.benchmark import *  # noqa: F403

warnings.warn(
    "collector.export moved to exports.benchmark; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
