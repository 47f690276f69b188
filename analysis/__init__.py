"""analysis: the store as SQL views, diagnostic rules, findings. Never imports torch.

The names below are imported when first used (PEP 562): ``telemetry runs`` needs only
the store, and importing the rule engine too would cost it ~0.15 s of its 1 s budget.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.engine import Diagnosis, diagnose, register_findings
    from analysis.findings import Finding, NotEvaluated, Severity
    from analysis.overrides import OverrideError, parse_overrides, read_config
    from analysis.rule import Rule, load_rules
    from analysis.store import Store, StoreError, Unreadable, open_store

_HOME = {
    "Diagnosis": "engine",
    "diagnose": "engine",
    "register_findings": "engine",
    "Finding": "findings",
    "NotEvaluated": "findings",
    "Severity": "findings",
    "OverrideError": "overrides",
    "parse_overrides": "overrides",
    "read_config": "overrides",
    "Rule": "rule",
    "load_rules": "rule",
    "Store": "store",
    "StoreError": "store",
    "Unreadable": "store",
    "open_store": "store",
}

__all__ = [
    "Diagnosis",
    "Finding",
    "NotEvaluated",
    "OverrideError",
    "Rule",
    "Severity",
    "Store",
    "StoreError",
    "Unreadable",
    "diagnose",
    "load_rules",
    "open_store",
    "parse_overrides",
    "read_config",
    "register_findings",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analysis.{home}"), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
