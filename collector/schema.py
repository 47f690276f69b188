"""Deprecated: the schema moved to ``store.schema`` (this path works for one release)."""

import warnings

from store.schema import *  # noqa: F403
from store.schema import SCHEMA_VERSION, SCHEMAS, EventKind, Stream, TensorKind  # noqa: F401

warnings.warn(
    "collector.schema moved to store.schema; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
