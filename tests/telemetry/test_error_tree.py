"""Issue 17: every error of the tree that reaches the CLI ends in its documented exit code
and one message, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from analysis.rule import RuleDefinitionError
from store.errors import ConfigError, StoreError, TelemetryError
from telemetry import cli


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreError("cannot create the store directory 'x'"), 3),
        (ConfigError("bad option"), 2),
        (RuleDefinitionError("rules/x.sql:1: no rule id"), 1),
        (TelemetryError("something else"), 1),
    ],
)
def test_an_error_of_the_tree_exits_with_its_code_and_one_message(
    monkeypatch: pytest.MonkeyPatch, error: TelemetryError, code: int
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(cli.runs, "callback", fail)
    result = CliRunner().invoke(cli.main, ["runs", "."])
    assert result.exit_code == code, result.output
    assert str(error).split(":")[0] in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, TelemetryError)  # handled, not re-raised
