"""analysis: the store as SQL views, diagnostic rules, findings. Never imports torch."""

from __future__ import annotations

from analysis.engine import Diagnosis, diagnose, register_findings
from analysis.findings import Finding, NotEvaluated, Severity
from analysis.overrides import OverrideError, parse_overrides, read_config
from analysis.rule import Rule, load_rules
from analysis.store import Store, StoreError, Unreadable, open_store

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
