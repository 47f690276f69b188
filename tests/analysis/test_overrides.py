"""Threshold overrides: text and TOML tables become typed params, or a clear error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from analysis import OverrideError, diagnose, load_rules, open_store, parse_overrides, read_config
from analysis.rule import Rule, parse_rule

RULE = parse_rule(
    """-- rule: toy
-- severity: warning
-- title: Toy
-- param: patience = 3
-- param: min_rise = 0.1
-- param: skip_output = True
-- param: metric = 'loss'
-- seed: §1
-- suggestion: Do something.
-- null: nothing happens
-- false_alarms: none
SELECT $patience, $min_rise, $skip_output, $metric
""",
    filename="toy.sql",
)
BARE = parse_rule(
    "-- rule: bare\n-- severity: info\n-- title: Bare\n-- seed: §2\n-- suggestion: x.\n"
    "-- null: n\n-- false_alarms: f\nSELECT 1\n",
    filename="bare.sql",
)
RULES = [RULE, BARE]


def _set(*assignments: str) -> dict[str, dict[str, Any]]:
    return parse_overrides(RULES, assignments=assignments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("toy.patience=5", 5),
        ("toy.min_rise=0.25", 0.25),
        ("toy.min_rise=2", 2.0),
        ("toy.min_rise=1e-3", 1e-3),
        ("toy.skip_output=false", False),
        ("toy.skip_output=Yes", True),
        ("toy.metric=nll", "nll"),
        (" toy.patience = 7 ", 7),
    ],
)
def test_assignments_take_the_type_of_the_declared_default(text: str, expected: Any) -> None:
    ((name, value),) = _set(text)["toy"].items()
    assert value == expected and type(value) is type(expected)
    assert name == text.split("=")[0].split(".")[1].strip()


def test_later_assignments_win_and_params_accumulate_per_rule() -> None:
    assert _set("toy.patience=5", "toy.metric=acc", "toy.patience=8") == {
        "toy": {"patience": 8, "metric": "acc"}
    }
    assert _set() == {}


def test_a_value_may_contain_dots_and_equals_signs() -> None:
    assert _set("toy.metric=val.loss=x") == {"toy": {"metric": "val.loss=x"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("toy.patience", "no '='"),
        ("patience=5", "not RULE.PARAM"),
        ("toy.=5", "not RULE.PARAM"),
        ("toy.patience=five", "'five' is not an integer like the default 3"),
        ("toy.patience=5.0", "not an integer"),
        ("toy.min_rise=high", "'high' is not a number"),
        ("toy.min_rise=nan", "NaN"),
        ("toy.skip_output=maybe", "'maybe' is not true or false"),
        ("toy.metric=", "empty"),
    ],
)
def test_malformed_assignments_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message) as raised:
        _set(text)
    assert repr(text) in str(raised.value)
    assert not raised.value.in_config


def test_unknown_rule_lists_the_rules_and_suggests_a_close_one() -> None:
    with pytest.raises(OverrideError, match="no rule 'tyo'") as raised:
        _set("tyo.patience=5")
    assert "did you mean 'toy'?" in str(raised.value)
    assert "rules: bare, toy" in str(raised.value)


def test_unknown_parameter_lists_the_rules_parameters_with_defaults() -> None:
    with pytest.raises(OverrideError, match="rule 'toy' has no parameter 'patiense'") as raised:
        _set("toy.patiense=5")
    message = str(raised.value)
    assert "did you mean 'patience'?" in message
    assert "patience = 3" in message and "metric = 'loss'" in message
    with pytest.raises(OverrideError, match="it has no parameters"):
        _set("bare.x=1")


def test_config_tables_are_checked_and_assignments_win_over_them() -> None:
    config = {"toy": {"patience": 5, "min_rise": 1, "metric": "acc"}}
    params = parse_overrides(RULES, config=config, assignments=["toy.patience=9"])
    assert params == {"toy": {"patience": 9, "min_rise": 1.0, "metric": "acc"}}
    assert isinstance(params["toy"]["min_rise"], float)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"toy": {"patience": "5"}}, r"tuning.toml: \[toy\] patience: '5' is not an integer"),
        ({"toy": {"patience": True}}, "True is not an integer"),
        ({"toy": {"skip_output": 1}}, "1 is not true or false"),
        ({"toy": {"min_rise": math.nan}}, "NaN"),
        ({"toy": {"nope": 1}}, r"tuning.toml: \[toy\] nope: rule 'toy' has no parameter 'nope'"),
        ({"tox": {"patience": 1}}, r"tuning.toml: \[tox\]: no rule 'tox'"),
        ({"patience": 5}, "'patience' is not a table"),
    ],
)
def test_bad_config_errors_name_the_source(config: dict[str, Any], message: str) -> None:
    with pytest.raises(OverrideError, match=message) as raised:
        parse_overrides(RULES, config=config, source="tuning.toml")
    assert raised.value.in_config


def test_read_config_parses_toml_tables_and_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[toy]\npatience = 5\nmetric = "nll"\n\n[bare]\n')
    assert read_config(path) == {"toy": {"patience": 5, "metric": "nll"}, "bare": {}}
    path.write_text("toy.patience = 4\n")
    assert parse_overrides(RULES, config=read_config(path)) == {"toy": {"patience": 4}}


def test_read_config_names_the_file_when_it_is_not_toml_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[toy\n")
    with pytest.raises(OverrideError, match="broken.toml: not valid TOML") as raised:
        read_config(path)
    assert raised.value.in_config
    with pytest.raises(OverrideError, match="missing.toml: cannot be read"):
        read_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r.id)
def test_every_shipped_default_round_trips_through_its_text(rule: Rule) -> None:
    texts = [f"{rule.id}.{name}={value}" for name, value in rule.params.items()]
    assert parse_overrides([rule], assignments=texts) == ({rule.id: rule.params} if texts else {})


def test_diagnose_rejects_params_for_a_rule_it_does_not_evaluate(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(KeyError, match="not evaluated"):
        diagnose(store, rules=[BARE], params={"toy": {"patience": 5}})
    with pytest.raises(KeyError, match="no parameter"):
        diagnose(store, rules=[RULE], params={"toy": {"nope": 5}})
    assert diagnose(store, rules=[RULE], params=_set("toy.patience=5")).findings == []
