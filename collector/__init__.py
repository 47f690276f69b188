"""collector: attach to a PyTorch training loop, append telemetry to a Parquet store.

``import collector`` is cheap: torch is imported only when ``Collector`` is first
touched (torch costs ~1-2 s to import; ``telemetry analyze`` never needs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from store.errors import ConfigError, NonFiniteError, StoreError, TelemetryError
from store.schema import SCHEMA_VERSION, EventKind, Stream, TensorKind

if TYPE_CHECKING:
    from collector.collector import Collector

__all__ = [
    "SCHEMA_VERSION",
    "Collector",
    "ConfigError",
    "EventKind",
    "NonFiniteError",
    "StoreError",
    "Stream",
    "TelemetryError",
    "TensorKind",
]


def __getattr__(name: str) -> Any:
    if name == "Collector":
        from collector.collector import Collector

        return Collector
    raise AttributeError(f"module 'collector' has no attribute {name!r}")
