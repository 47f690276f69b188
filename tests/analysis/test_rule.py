"""The rule loader validates each rule's header and names the file and line it rejects."""

from __future__ import annotations

import pytest

from analysis.findings import Severity
from analysis.rule import RuleDefinitionError, parse_rule

GOOD = """\
-- rule: demo_rule
-- severity: warning
-- title: A demo
-- requires: scalars:$metric/train>=5, tensors:grad | system
-- param: limit = 0.5
-- param: metric = 'loss'
-- seed: part 1 §3
-- suggestion: Do the thing the seed says.
-- null: the value stays under the limit in a healthy run
-- false_alarms: none on the corpus
SELECT run_id, NULL AS subject, NULL AS step, 'm' AS message, '{}' AS evidence
FROM scalars WHERE value > $limit
"""


def test_a_well_formed_rule_parses_into_a_record() -> None:
    rule = parse_rule(GOOD, filename="rules/demo_rule.sql")
    assert rule.id == "demo_rule" and rule.severity == Severity.WARNING
    assert rule.params == {"limit": 0.5, "metric": "loss"}
    described = [" or ".join(r.describe() for r in need) for need in rule.requires]
    assert described == ["at least 5 rows of scalars:$metric/train", "tensors:grad or system"]
    resolved = rule.requires[0][0].resolve({"metric": "mse"})
    assert resolved.describe() == "at least 5 rows of scalars:mse/train"
    assert rule.sql.startswith("SELECT")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("-- title: A demo\n", ""), "rules/demo_rule.sql:1: missing header field '-- title:'"),
        (("severity: warning", "severity: fatal"), "is not error, warning or info"),
        (("rule: demo_rule", "rule: other"), "!= file name 'demo_rule'"),
        (
            ("-- param: limit = 0.5\n", ""),
            "rules/demo_rule.sql:11: $limit is used but not declared",
        ),
        (("-- null: the value", "-- nul: the value"), "missing header field '-- null:'"),
        (("-- false_alarms: none", "-- alarms: none"), "missing header field '-- false_alarms:'"),
        (("-- param: metric = 'loss'\n", ""), "demo_rule.sql:4: $metric is used but not declared"),
        (("> $limit", "> 1"), "rules/demo_rule.sql:5: parameter 'limit' is never used"),
        (
            ("limit = 0.5", "limit = zero"),
            "rules/demo_rule.sql:5: parameter 'limit' has no literal",
        ),
        (("| system", "| nowhere"), "rules/demo_rule.sql:4: cannot require 'nowhere'"),
        (("tensors:grad", "system:x"), "cannot require 'system:x'"),
    ],
)
def test_malformed_headers_are_rejected_with_file_and_line(
    change: tuple[str, str], message: str
) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(RuleDefinitionError) as info:
        parse_rule(text, filename="rules/demo_rule.sql")
    assert message in str(info.value)


def test_a_parameter_mentioned_only_in_a_comment_is_not_used() -> None:
    text = GOOD.replace("> $limit", "> 1 -- compare with $limit")
    with pytest.raises(RuleDefinitionError, match="never used"):
        parse_rule(text, filename="rules/demo_rule.sql")
