"""Rules: ``rules/<rule_id>.sql`` files whose comment header is their metadata.

Header fields (one per line, before the query)::

    -- rule: overfitting                   must equal the file name
    -- severity: warning                   error | warning | info
    -- title: Overfitting                  a few words for tables
    -- requires: scalars:loss/val>=3       data a run must have, else "not evaluated"
    -- param: min_rise = 0.1               a threshold; used in the query as $min_rise
    -- seed: §1.3, §3.3                    where the seed tutorial discusses it
    -- suggestion: ...                     what to do (from the seed's tables)
    -- null: ...                           the null hypothesis: what a healthy run shows
    -- false_alarms: ...                   the budget: how often it may fire on healthy runs

The query returns ``run_id, subject, step, message, evidence`` (evidence: JSON), one
row per finding. Loading rejects a missing field, a parameter declared but unused
or used but undeclared, and a rule id that does not match its file, naming
``file:line``. Parameter values are passed as prepared parameters, never formatted
into the SQL.

``requires`` is a comma-separated list of needs, all of which must hold; a need is
one or more alternatives separated by ``|``. An alternative is ``<view>`` (any row
for the run), ``scalars:<name>/<split>`` or ``tensors:<kind>``, optionally with
``>=N`` rows; ``$param`` in it takes the parameter's value (``scalars:$metric/val``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from analysis.findings import Severity
from analysis.store import VIEWS
from collector.errors import TelemetryError

_FIELD_RE = re.compile(r"^--\s*([a-z_]+):\s*(.*?)\s*$")
_PARAM_USE_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_REQUIRE_RE = re.compile(r"^(?P<view>[a-z_]+)(?::(?P<what>[^>=\s]+))?(?:\s*>=\s*(?P<n>\d+))?$")
_REQUIRABLE = VIEWS
_DETAILED = ("scalars", "tensors")
# null and false_alarms: a rule states what a healthy run shows and how often it may
# fire on one (issue 15's protocol: calibrated on tests/corpus's tuning half).
_REQUIRED_FIELDS = ("rule", "severity", "title", "seed", "suggestion", "null", "false_alarms")


class RuleDefinitionError(TelemetryError, ValueError):
    """A rule file is malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class Requirement:
    view: str
    what: str | None = None
    min_rows: int = 1

    def describe(self) -> str:
        target = f"{self.view}:{self.what}" if self.what else self.view
        return target if self.min_rows == 1 else f"at least {self.min_rows} rows of {target}"

    def resolve(self, params: dict[str, Any]) -> Requirement:
        """This requirement with ``$param`` references replaced by their values."""
        if self.what is None or "$" not in self.what:
            return self
        what = _PARAM_USE_RE.sub(lambda m: str(params[m.group(1)]), self.what)
        return Requirement(self.view, what, self.min_rows)


Need = tuple[Requirement, ...]
"""Alternatives: a need is met when any of them is."""


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str
    suggestion: str
    seed: str
    params: dict[str, Any]
    requires: tuple[Need, ...]
    sql: str
    null: str
    """The null hypothesis the rule decides against (what a healthy run shows)."""
    false_alarms: str
    """The false-alarm budget on healthy runs, as calibrated (see tests/corpus)."""


def parse_rule(text: str, *, filename: str) -> Rule:
    """Parse and validate one rule file's text."""
    fields: dict[str, str] = {}
    params: dict[str, Any] = {}
    param_lines: dict[str, int] = {}
    requires: list[Need] = []
    header_uses: dict[str, int] = {}
    body_lines: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _FIELD_RE.match(line)
        if m and not body_lines:
            key, value = m.group(1), m.group(2)
            if key == "param":
                name, sep, default = value.partition("=")
                name = name.strip()
                if not sep or not name.isidentifier():
                    raise RuleDefinitionError(
                        f"{filename}:{lineno}: expected 'param: name = value'"
                    )
                try:
                    params[name] = ast.literal_eval(default.strip())
                except (ValueError, SyntaxError) as e:
                    raise RuleDefinitionError(
                        f"{filename}:{lineno}: parameter {name!r} has no literal default"
                    ) from e
                param_lines[name] = lineno
            elif key == "requires":
                for need in filter(None, (s.strip() for s in value.split(","))):
                    alternatives = []
                    for item in (a.strip() for a in need.split("|")):
                        alternatives.append(_parse_requirement(item, f"{filename}:{lineno}"))
                        for name in _PARAM_USE_RE.findall(item):
                            header_uses.setdefault(name, lineno)
                    requires.append(tuple(alternatives))
            else:
                fields[key] = value
        elif line.startswith("--") and not body_lines:
            continue  # a plain comment in the header
        else:
            body_lines.append(line)
    for key in _REQUIRED_FIELDS:
        if not fields.get(key):
            raise RuleDefinitionError(f"{filename}:1: missing header field '-- {key}:'")
    stem = filename.rsplit("/", 1)[-1].removesuffix(".sql")
    if fields["rule"] != stem:
        raise RuleDefinitionError(f"{filename}:1: rule id {fields['rule']!r} != file name {stem!r}")
    try:
        severity = Severity(fields["severity"])
    except ValueError as e:
        raise RuleDefinitionError(
            f"{filename}:1: severity {fields['severity']!r} is not error, warning or info"
        ) from e
    sql = "\n".join(body_lines)
    used = set(_PARAM_USE_RE.findall(_strip_sql_comments(sql))) | set(header_uses)
    for name in sorted(set(params) - used):
        raise RuleDefinitionError(
            f"{filename}:{param_lines[name]}: parameter {name!r} is never used"
        )
    for name in sorted(used - set(params)):
        at = next(i for i, ln in enumerate(text.splitlines(), 1) if f"${name}" in ln)
        raise RuleDefinitionError(f"{filename}:{at}: ${name} is used but not declared")
    return Rule(
        id=fields["rule"],
        severity=severity,
        title=fields["title"],
        suggestion=fields["suggestion"],
        seed=fields["seed"],
        params=params,
        requires=tuple(requires),
        sql=sql,
        null=fields["null"],
        false_alarms=fields["false_alarms"],
    )


def _parse_requirement(item: str, where: str) -> Requirement:
    r = _REQUIRE_RE.match(item)
    if r is None:
        raise RuleDefinitionError(f"{where}: bad requirement {item!r}")
    if r["view"] not in _REQUIRABLE or (r["what"] and r["view"] not in _DETAILED):
        raise RuleDefinitionError(
            f"{where}: cannot require {item!r}; views: "
            f"{', '.join(_REQUIRABLE)} (':' only for {', '.join(_DETAILED)})"
        )
    return Requirement(r["view"], r["what"], int(r["n"] or 1))


def _strip_sql_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def load_rules() -> list[Rule]:
    """Every rule shipped in ``analysis/rules``, sorted by id."""
    folder = resources.files("analysis.rules")
    rules = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            rules.append(parse_rule(entry.read_text(), filename=f"analysis/rules/{entry.name}"))
    return rules
