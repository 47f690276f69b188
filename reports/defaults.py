"""Defaults the report's entry points (``reports``) share with the page machinery.

A leaf: it imports nothing, so ``import reports`` stays light and the modules behind
the entry points (``reports.page``, ``reports.data``) need not import the package's
``__init__``, which imports them.
"""

from __future__ import annotations

MAX_RUNS = 10
"""Runs with per-run sections by default: the most recently started (``reports.data``)."""
