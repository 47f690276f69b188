"""telemetry: the command line (``telemetry``) and the demo; ties collector, analysis, reports."""

from __future__ import annotations

__all__: list[str] = []
