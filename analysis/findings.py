"""What a diagnosis produces: findings, and the rules that could not be evaluated."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        """Higher is worse; used for sorting and ``--fail-on``."""
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One thing a rule found in one run. ``evidence`` holds the numbers that triggered it."""

    rule: str
    severity: Severity
    run_id: str
    subject: str | None
    step: int | None
    message: str
    suggestion: str
    evidence: dict[str, Any] = field(default_factory=dict)
    caused_by: str | None = None
    """The ``key`` of the finding of the same run that explains this one
    (``analysis.causes``): fix that one first."""

    @property
    def key(self) -> str:
        """``rule`` or ``rule:subject``: what ``caused_by`` names."""
        return self.rule if self.subject is None else f"{self.rule}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


@dataclass(frozen=True)
class NotEvaluated:
    """A rule that could not judge a run, and why (it never passes silently)."""

    rule: str
    run_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FINDINGS_SCHEMA = pa.schema(
    [
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("run_id", pa.string()),
        ("subject", pa.string()),
        ("step", pa.int64()),
        ("message", pa.string()),
        ("suggestion", pa.string()),
        ("evidence", pa.string()),
        ("caused_by", pa.string()),
    ]
)
"""The columns of the ``findings`` table (``analysis.engine.register_findings``);
``evidence`` is JSON text."""


def findings_table(findings: Iterable[Finding]) -> pa.Table:
    """``findings`` as rows of ``FINDINGS_SCHEMA``, in their order."""
    rows = [
        {
            **f.to_dict(),
            "evidence": json.dumps(f.evidence, default=repr, allow_nan=True),
        }
        for f in findings
    ]
    return pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA)
