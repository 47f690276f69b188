"""Errors raised to the user of the collector.

    TelemetryError               base class; never raised from inside a training step
    ├── ConfigError (ValueError) a bad argument to Collector(...) or log(...)
    ├── StoreError (OSError)     the store directory cannot be created or written at start-up
    └── NonFiniteError (FloatingPointError)  the loss or gradients turned NaN/Inf, under
                                 Collector(on_nonfinite="raise"): the one error raised
                                 from inside training, because the user asked for it

Every other error the project defines derives from ``TelemetryError`` too (it lives
here, torch-free, until the redesign gives the store its own package): the readers'
``analysis.StoreError``, ``RuleDefinitionError``, ``OverrideError``, ``Vanished``; the
report's ``SampleError``; the exports' ``FormatUnavailable``; ``shutdown.Terminated``.

After start-up nothing raises into the training loop but ``NonFiniteError``: the writer
counts what it could not write and records it as a ``dropped`` event instead.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TelemetryError, ValueError):
    """An argument has a value we cannot use; the message names it and the fix."""


class StoreError(TelemetryError, OSError):
    """The store cannot be used (not creatable, not writable)."""


class NonFiniteError(TelemetryError, FloatingPointError):
    """The training loss or the gradients turned NaN or infinite under
    ``Collector(on_nonfinite="raise")``; the message names the step and the origin
    module. Every row recorded before it is on disk (``collector.stopping``)."""
