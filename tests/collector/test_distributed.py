"""Which ranks record parameter statistics (collector.distributed.param_stats_every)."""

from __future__ import annotations

import pytest

from collector.distributed import PARAM_STATS_RANKS_ENV, Placement, param_stats_every
from store.errors import ConfigError

RANK0, RANK1 = Placement(0, 2, True), Placement(1, 2, True)


def test_parameter_statistics_are_rank_zeros_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARAM_STATS_RANKS_ENV, raising=False)
    assert param_stats_every(RANK0, 5) == 5
    assert param_stats_every(RANK1, 5) == 0
    schedule = lambda step: True  # noqa: E731  (the overhead budget's per-step schedule)
    assert param_stats_every(RANK0, schedule) is schedule
    assert param_stats_every(RANK1, schedule) == 0


def test_every_rank_records_them_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARAM_STATS_RANKS_ENV, "all")
    assert param_stats_every(RANK1, 5) == 5


def test_a_bad_setting_names_the_variable_and_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARAM_STATS_RANKS_ENV, "1")
    with pytest.raises(ConfigError, match="TELEMETRY_PARAM_STATS_RANKS='1': expected '0'"):
        param_stats_every(RANK0, 1)
