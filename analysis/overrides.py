"""Threshold overrides: ``rule.param=value`` strings and TOML tables -> typed ``params``.

``diagnose(store, params=...)`` takes ``{"overfitting": {"patience": 5}}``. This module
builds that mapping from what a person types, checked against the rules' headers: the
rule and the parameter must exist, and the value must have the type of the declared
default (``-- param: patience = 3`` makes ``patience`` an int, ``= 0.1`` a float,
``= True`` a bool, ``= 'loss'`` a string). Every problem is an ``OverrideError`` (a
``ValueError``) whose message names the input, what is wrong and what is accepted, so
the CLI can show it as it is.

Example:
    >>> from analysis import load_rules, parse_overrides
    >>> parse_overrides(load_rules(), assignments=["overfitting.patience=5"])
    {'overfitting': {'patience': 5}}
"""

from __future__ import annotations

import ast
import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis.rule import Rule
from store.errors import TelemetryError

Overrides = dict[str, dict[str, Any]]
"""``{rule_id: {param: value}}``, the shape ``diagnose(params=...)`` takes."""

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class OverrideError(TelemetryError, ValueError):
    """An override names an unknown rule or parameter, or has a value of the wrong type.

    ``in_config`` tells whether the config (rather than an assignment) was at fault.
    """

    def __init__(self, message: str, *, in_config: bool = False) -> None:
        super().__init__(message)
        self.in_config = in_config


def parse_overrides(
    rules: Iterable[Rule],
    *,
    assignments: Iterable[str] = (),
    config: Mapping[str, Any] | None = None,
    source: str = "config",
) -> Overrides:
    """Validated, typed overrides from a config mapping and ``rule.param=value`` strings.

    ``config`` is one table per rule (``{"overfitting": {"patience": 5}}``, what
    ``read_config`` returns); its values must already have the default's type (an int
    is accepted where a float is declared). ``assignments`` are parsed to that type;
    they are applied after ``config``, so they win, and a later one wins over an
    earlier one. ``source`` names the config in error messages (its file name).
    """
    by_id = {r.id: r for r in rules}
    result: Overrides = {}
    try:
        _apply_config(result, by_id, config or {}, source=source)
    except OverrideError as e:
        raise OverrideError(str(e), in_config=True) from None
    for text in assignments:
        rule_id, name, raw = _split(text)
        where = repr(text)
        rule = _rule(by_id, rule_id, where=where)
        default = _default(rule, name, where=where)
        value = _check(_from_text(raw, default), default, where=where)
        result.setdefault(rule.id, {})[name] = value
    return result


def _apply_config(
    result: Overrides, by_id: Mapping[str, Rule], config: Mapping[str, Any], *, source: str
) -> None:
    for rule_id, table in config.items():
        if not isinstance(table, Mapping):
            raise OverrideError(
                f"{source}: {rule_id!r} is not a table; write one table per rule, "
                "e.g. '[overfitting]' then 'patience = 5' on the next line"
            )
        rule = _rule(by_id, rule_id, where=f"{source}: [{rule_id}]")
        for name, value in table.items():
            where = f"{source}: [{rule_id}] {name}"
            default = _default(rule, name, where=where)
            result.setdefault(rule.id, {})[name] = _check(value, default, where=where)


def read_config(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; an ``OverrideError`` naming the file if it cannot be read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser as the 'tomli' package, if installed
        try:
            import tomli as tomllib
        except ModuleNotFoundError as e:
            raise OverrideError(
                f"{path}: reading TOML needs Python 3.11+ or the 'tomli' package",
                in_config=True,
            ) from e
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise OverrideError(f"{path}: not valid TOML: {e}", in_config=True) from e
    except OSError as e:
        raise OverrideError(f"{path}: cannot be read: {e.strerror or e}", in_config=True) from e


def _split(text: str) -> tuple[str, str, str]:
    key, sep, raw = text.partition("=")
    rule_id, dot, name = key.strip().rpartition(".")
    if not sep:
        problem = "there is no '='"
    elif not dot or not rule_id or not name.strip():
        problem = "the name before '=' is not RULE.PARAM"
    else:
        return rule_id, name.strip(), raw.strip()
    raise OverrideError(
        f"{text!r}: {problem}; expected RULE.PARAM=VALUE, e.g. overfitting.patience=5"
    )


def _rule(by_id: Mapping[str, Rule], rule_id: str, *, where: str) -> Rule:
    if rule_id in by_id:
        return by_id[rule_id]
    raise OverrideError(
        f"{where}: no rule {rule_id!r}{_did_you_mean(rule_id, by_id)}; "
        f"rules: {', '.join(sorted(by_id)) or 'none'}"
    )


def _default(rule: Rule, name: str, *, where: str) -> Any:
    if name in rule.params:
        return rule.params[name]
    declared = ", ".join(f"{p} = {v!r}" for p, v in rule.params.items())
    raise OverrideError(
        f"{where}: rule {rule.id!r} has no parameter {name!r}{_did_you_mean(name, rule.params)}; "
        + (f"its parameters: {declared}" if declared else "it has no parameters")
    )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_text(raw: str, default: Any) -> Any:
    """``raw`` as a value of the default's type; left as text when it does not parse."""
    if isinstance(default, bool):
        lowered = raw.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else raw
    if isinstance(default, int | float):
        try:
            return int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            return raw
    if isinstance(default, str):
        return raw
    try:  # a default of another literal type (tuple, list, None): read a literal of it
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _check(value: Any, default: Any, *, where: str) -> Any:
    """``value`` if it has the default's type (an int widened to float), else an error."""
    ok: bool
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
        if ok:
            value = float(value)
            if math.isnan(value):
                raise OverrideError(f"{where}: NaN is not a threshold (every comparison is false)")
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
        if ok and not value:
            raise OverrideError(f"{where}: the value is empty; expected a string like {default!r}")
    else:
        ok = default is None or isinstance(value, type(default))
        expected = f"a {type(default).__name__}"
    if not ok:
        raise OverrideError(f"{where}: {value!r} is not {expected} like the default {default!r}")
    return value
