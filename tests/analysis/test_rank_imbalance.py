"""rank_imbalance: a straggler rank by step time or by data wait; balanced ranks stay silent."""

from __future__ import annotations

from pathlib import Path

from analysis import diagnose, load_rules, open_store
from tests.analysis import cases
from tests.builders import RunBuilder

RULE = [r for r in load_rules() if r.id == "rank_imbalance"]


def _ranks(root: Path, timings: list[tuple[float, float]], run_id: str = "ddp") -> None:
    """One run, rank r with median step time and data wait ``timings[r]``."""
    for rank, (step_s, data_s) in enumerate(timings):
        run = RunBuilder(root, run_id, rank=rank)
        steps = cases.noisy([step_s] * 30, 0.1, seed=rank)
        waits = cases.noisy([data_s] * 30, 0.1, seed=10 + rank)
        run.system(steps, waits).finish().write()


def test_balanced_ranks_are_silent(tmp_path: Path) -> None:
    _ranks(tmp_path, [(0.1, 0.01), (0.11, 0.012), (0.1, 0.009), (0.105, 0.011)])
    diagnosis = diagnose(open_store(tmp_path), rules=RULE)
    assert diagnosis.findings == [] and diagnosis.not_evaluated == []


def test_a_slow_step_on_one_of_four_ranks_names_that_rank(tmp_path: Path) -> None:
    _ranks(tmp_path, [(0.1, 0.01), (0.1, 0.01), (0.2, 0.01), (0.1, 0.01)])
    (finding,) = diagnose(open_store(tmp_path), rules=RULE).findings
    assert finding.subject == "rank 2"
    assert "median step takes" in finding.message and "the other 3 rank(s)" in finding.message
    assert 1.8 < finding.evidence["step_ratio"] < 2.2


def test_extra_data_wait_fires_even_when_all_reduce_evens_out_step_times(tmp_path: Path) -> None:
    cases.rank_imbalance(tmp_path).write()
    (finding,) = diagnose(open_store(tmp_path), rules=RULE).findings
    assert finding.subject == "rank 1" and "waits" in finding.message
    assert finding.evidence["extra_data_share"] > 0.5


def test_below_the_ratio_is_silent_and_the_ratio_can_be_lowered(tmp_path: Path) -> None:
    _ranks(tmp_path, [(0.1, 0.01), (0.13, 0.01)])  # 1.3x: below the default 1.5
    store = open_store(tmp_path)
    assert diagnose(store, rules=RULE).findings == []
    strict = diagnose(store, rules=RULE, params={"rank_imbalance": {"ratio": 1.2}})
    assert [f.subject for f in strict.findings] == ["rank 1"]


def test_a_single_rank_run_has_nothing_to_compare(tmp_path: Path) -> None:
    _ranks(tmp_path, [(0.5, 0.4)])
    diagnosis = diagnose(open_store(tmp_path), rules=RULE)
    assert diagnosis.findings == [] and diagnosis.not_evaluated == []
