"""The scenario suite's one training session, and its precision/recall table.

Every scenario of ``catalogue.SCENARIOS`` trains once per pytest session into one store
(``suite``); ``analysis.diagnose`` then runs every rule on it once. The tests read the
outcome; the table of what each rule caught is printed at the end of the session under
"scenario suite: precision and recall per rule" and written next to the store
(``table.txt``, its path printed with it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from analysis import Finding, diagnose, load_rules, open_store
from telemetry.demo import load_digits_tensors
from tests.scenarios.catalogue import SCENARIOS, Scenario, Truth

# Export benchmarks are validated by tests/analysis/test_export_rules.py (no training).
RULES = sorted(r.id for r in load_rules() if not r.id.startswith("export_"))
# Rules judged on every run here (a false positive counts) but without a run of their own.
UNLABELLED = {
    "rank_imbalance": "compares the ranks of one distributed run: single-process runs",
    # issue 16's classic mistakes are labelled in tests/corpus (two architectures each)
    **{
        rule: "labelled in tests/corpus"
        for rule in ("missing_eval_mode", "missing_zero_grad", "chance_level", "lr_too_high")
    },
    # issue 22's rules too: failed runs, devices, memory, inputs and predictions need their
    # own loops (the scenario harness logs no predictions)
    **{
        rule: "labelled in tests/corpus"
        for rule in (
            "run_failed",
            "device_underused",
            "memory_pressure",
            "unnormalized_inputs",
            "class_imbalance",
            "prediction_collapse",
        )
    },
}


@dataclass
class Outcome:
    scenario: Scenario
    truth: Truth
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    data_share: float = float("nan")  # median data wait / step time, as the collector timed it
    data_bound: float = float("nan")  # share of timed steps with a data wait >= half the step

    @property
    def fired(self) -> set[str]:
        return {f.rule for f in self.findings}

    @property
    def unexpected(self) -> set[str]:
        """Rules that fired but are neither the run's pathology nor implied by it."""
        return self.fired - {self.scenario.rule} - self.scenario.also


@dataclass
class Suite:
    root: Path
    outcomes: dict[str, Outcome]
    train_s: float
    diagnose_s: float


@dataclass(frozen=True)
class Score:
    rule: str
    true_pos: int
    false_neg: int
    false_pos: int
    implied: int  # co-firings declared by the scenario

    @property
    def precision(self) -> float | None:
        fired = self.true_pos + self.false_pos
        return self.true_pos / fired if fired else None

    @property
    def recall(self) -> float | None:
        labelled = self.true_pos + self.false_neg
        return self.true_pos / labelled if labelled else None


def scores(outcomes: list[Outcome]) -> list[Score]:
    out = []
    for rule in RULES:
        target = [o for o in outcomes if o.scenario.rule == rule]
        others = [o for o in outcomes if o.scenario.rule != rule and rule in o.fired]
        out.append(
            Score(
                rule,
                true_pos=sum(rule in o.fired for o in target),
                false_neg=sum(rule not in o.fired for o in target),
                false_pos=sum(rule not in o.scenario.also for o in others),
                implied=sum(rule in o.scenario.also for o in others),
            )
        )
    return out


def table(suite: Suite) -> list[str]:
    def pct(v: float | None) -> str:
        return "   -" if v is None else f"{100 * v:3.0f}%"

    outcomes = list(suite.outcomes.values())
    lines = [
        f"{len(outcomes)} runs ({sum(o.scenario.rule is None for o in outcomes)} healthy), "
        f"trained in {suite.train_s:.1f} s, diagnosed in {suite.diagnose_s:.1f} s",
        f"{'rule':<24}{'TP':>4}{'FN':>4}{'FP':>4}{'implied':>9}{'precision':>11}{'recall':>8}",
    ]
    for s in scores(outcomes):
        lines.append(
            f"{s.rule:<24}{s.true_pos:>4}{s.false_neg:>4}{s.false_pos:>4}{s.implied:>9}"
            f"{pct(s.precision):>11}{pct(s.recall):>8}"
        )
    lines.append(
        "per run: seconds, rules fired, median data-wait share of a step as the collector "
        "timed it, ground truth"
    )
    for name, o in suite.outcomes.items():
        label = o.scenario.rule or "healthy"
        fired = ", ".join(sorted(o.fired)) or "nothing"
        lines.append(
            f"  {name:<28} {o.seconds:5.1f}s  [{label}] fired: {fired}; "
            f"data wait {100 * o.data_share:.0f}% ({100 * o.data_bound:.0f}% of steps >= half)"
        )
        numbers = ", ".join(f"{k}={_num(v)}" for k, v in o.truth.numbers.items())
        lines.append(f"      {numbers}")
    return lines


def _num(v: float) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


SUMMARY: list[list[str]] = []


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("scenarios")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is fastest, and the machine is shared
    try:
        data = load_digits_tensors()
        outcomes, started = {}, time.perf_counter()
        for scenario in SCENARIOS:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            truth = scenario.train(root / "runs", data)
            outcomes[scenario.name] = Outcome(scenario, truth, time.perf_counter() - t0)
        train_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    store = open_store(root / "runs")
    by_run = {o.truth.run_id: o for o in outcomes.values()}
    for finding in diagnose(store, rules=[r for r in load_rules() if r.id in RULES]).findings:
        by_run[finding.run_id].findings.append(finding)
    shares = store.sql(
        "SELECT run_id, median(data_time_s / step_time_s) AS share, "
        "avg((data_time_s >= 0.5 * step_time_s)::INT) AS bound FROM system "
        "WHERE step_time_s > 0 GROUP BY run_id"
    )
    for run_id, share, bound in shares.rows():
        by_run[run_id].data_share, by_run[run_id].data_bound = share, bound
    result = Suite(root, outcomes, train_s, time.perf_counter() - t0)
    lines = table(result)
    (root / "table.txt").write_text("\n".join(lines) + "\n")
    SUMMARY.append([*lines, f"(also in {root / 'table.txt'})"])
    yield result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for lines in SUMMARY:
        terminalreporter.section("scenario suite: precision and recall per rule")
        for line in lines:
            terminalreporter.write_line(line)
