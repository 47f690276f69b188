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
    -- when: ended                         optional: a running run is "not evaluated"

The query returns ``run_id, subject, step, message, evidence`` (evidence: JSON), one
row per finding, and may return a ``suggestion`` column too: where it is not null, the
finding carries it instead of the header's (advice that depends on the run, such as
``vanishing_gradients`` reading the run's activation modules); the header's stays the
rule's general advice and the fallback. Loading rejects a missing field, a parameter
declared but unused or used but undeclared, and a rule id that does not match its
file, naming ``file:line``. Parameter values are passed as prepared parameters, never
formatted into the SQL.

``when: ended`` marks a rule that judges a run as a whole (its outcome, its rest, a
state it may still leave): on a run still ``running`` it is not evaluated ("judged once
the run has ended"), so ``telemetry watch`` and an analysis of a live run do not raise
what the rest of the run may take back. Healthy runs of the labelled corpus cut at
10-90 % of their steps drew warnings from exactly such rules before.

``requires`` is a comma-separated list of needs, all of which must hold; a need is
one or more alternatives separated by ``|``. An alternative is ``<view>`` (any row
for the run), ``scalars:<name>/<split>``, ``tensors:<kind>``, or ``<view>:<column>``
for the other views (the rows whose ``column`` is not null: ``activations:dead_frac``,
the ReLU outputs; the column must be one of the stream's), optionally with ``>=N``
rows. ``$param`` takes the parameter's value in a name or split
(``scalars:$metric/val``) and in a count (``>=$min_samples``, an int parameter), never
in a column.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from analysis.findings import Severity
from analysis.store import VIEWS
from store.errors import TelemetryError
from store.schema import stream_columns

_FIELD_RE = re.compile(r"^--\s*([a-z_]+):\s*(.*?)\s*$")
_PARAM_USE_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_REQUIRE_RE = re.compile(
    r"^(?P<view>[a-z_]+)(?::(?P<what>[^>=\s]+))?"
    r"(?:\s*>=\s*(?P<n>\d+|\$[A-Za-z_][A-Za-z0-9_]*))?$"
)
_REQUIRABLE = VIEWS
_DETAILED = ("scalars", "tensors")
"""Views whose ``:`` names a row's name/split or kind; in the others it names a column."""
_COLUMN_NOTES: dict[tuple[str, str], tuple[str, str]] = {
    ("activations", "dead_frac"): (
        "ReLU outputs",
        "no nn.ReLU module and no functional relu found",
    ),
}
"""What a column holds and, when a run has none, why in words a user understands:
``(view, column) -> (what it is, what its absence means)``."""
# null and false_alarms: a rule states what a healthy run shows and how often it may
# fire on one (issue 15's protocol: calibrated on tests/corpus's tuning half).
_REQUIRED_FIELDS = ("rule", "severity", "title", "seed", "suggestion", "null", "false_alarms")


class RuleDefinitionError(TelemetryError, ValueError):
    """A rule file is malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class Requirement:
    view: str
    what: str | None = None
    """``name/split`` for scalars, ``kind`` for tensors, a column for the other views."""
    min_rows: int = 1
    min_rows_param: str | None = None
    """The parameter that sets ``min_rows`` (``>=$name``), until ``resolve`` reads it."""

    @property
    def column(self) -> str | None:
        """The column whose non-null values are counted (``<view>:<column>``), if any."""
        return self.what if self.view not in _DETAILED else None

    def describe(self, seen: tuple[int, int] | None = None) -> str:
        """In words; ``seen`` (this run's matching rows, and all its rows of the view)
        says, for a column, how many the run had."""
        count = f"${self.min_rows_param}" if self.min_rows_param else str(self.min_rows)
        column = self.column
        if column is None:
            target = f"{self.view}:{self.what}" if self.what else self.view
            return target if count == "1" else f"at least {count} rows of {target}"
        text = (
            f"{self.view} with {column}"
            if count == "1"
            else f"at least {count} {self.view} rows with {column}"
        )
        what, absent = _COLUMN_NOTES.get((self.view, column), ("", ""))
        notes = [what] if what else []
        if seen is not None:
            have, total = seen
            if have:
                notes.append(f"only {have} seen")
            elif not total:
                notes.append(f"none seen: the run recorded no {self.view}")
            elif absent:
                notes.append(f"none seen: {absent} in its {total} {self.view} rows")
            else:
                notes.append(f"none of its {total} {self.view} rows has one")
        return f"{text} ({'; '.join(notes)})" if notes else text

    def resolve(self, params: dict[str, Any]) -> Requirement:
        """This requirement with ``$param`` references replaced by their values."""
        what, min_rows = self.what, self.min_rows
        if what is not None and "$" in what:
            what = _PARAM_USE_RE.sub(lambda m: str(params[m.group(1)]), what)
        if self.min_rows_param is not None:
            min_rows = int(params[self.min_rows_param])
        if what == self.what and self.min_rows_param is None:
            return self
        return Requirement(self.view, what, min_rows)


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
    ended_only: bool = False
    """``when: ended``: not evaluated on a run still running."""


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
    when = fields.get("when", "any")
    if when not in ("any", "ended"):
        raise RuleDefinitionError(f"{filename}:1: 'when: {when}' is not 'ended' or 'any'")
    sql = "\n".join(body_lines)
    used = set(_PARAM_USE_RE.findall(_strip_sql_comments(sql))) | set(header_uses)
    for name in sorted(set(params) - used):
        raise RuleDefinitionError(
            f"{filename}:{param_lines[name]}: parameter {name!r} is never used"
        )
    for name in sorted(used - set(params)):
        at = next(i for i, ln in enumerate(text.splitlines(), 1) if f"${name}" in ln)
        raise RuleDefinitionError(f"{filename}:{at}: ${name} is used but not declared")
    for req in (r for need in requires for r in need):
        default = params.get(req.min_rows_param) if req.min_rows_param else 0
        if isinstance(default, bool) or not isinstance(default, int):
            raise RuleDefinitionError(
                f"{filename}:{header_uses[req.min_rows_param or '']}: a count "
                f"'>=${req.min_rows_param}' needs an int parameter, not {default!r}"
            )
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
        ended_only=when == "ended",
    )


def _parse_requirement(item: str, where: str) -> Requirement:
    r = _REQUIRE_RE.match(item)
    if r is None:
        raise RuleDefinitionError(f"{where}: bad requirement {item!r}")
    view, what, n = r["view"], r["what"], r["n"] or "1"
    if view not in _REQUIRABLE:
        raise RuleDefinitionError(
            f"{where}: cannot require {item!r}; views: {', '.join(_REQUIRABLE)}"
        )
    if what and view not in _DETAILED and what not in stream_columns(view):
        # a column is formatted into the count query: only the stream's own names pass
        raise RuleDefinitionError(
            f"{where}: cannot require {item!r}: {view} has no column {what!r}; "
            f"columns: {', '.join(stream_columns(view))}"
        )
    if n.startswith("$"):
        return Requirement(view, what, 1, n[1:])
    return Requirement(view, what, int(n))


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
