"""The corpus trained into one store and diagnosed once.

``build(root)`` trains every registered run that ``root`` does not hold yet into the
store ``root/runs`` and records each run's ground truth and training time in
``root/truths.json``; a second call (another pytest session with the same
``TELEMETRY_CORPUS_STORE``, or ``benchmarks/calibration.py --store``) trains nothing.
``diagnose_corpus`` then runs every rule but the export ones on the store, once.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from analysis import Finding, Severity, diagnose, load_rules, open_store
from tests.corpus import healthy, pathological  # noqa: F401 (they register the runs)
from tests.corpus.registry import RUNS, Run
from tests.scenarios.catalogue import Truth

log = logging.getLogger(__name__)

# Export benchmarks have no training to judge (tests/analysis covers them); every other
# rule is evaluated on every run, rank_imbalance included though no run has two ranks.
RULES = sorted(r.id for r in load_rules() if not r.id.startswith("export_"))
UNLABELLED = {"rank_imbalance": "compares the ranks of a distributed run: every run here has one"}


@dataclass
class Outcome:
    run: Run
    truth: Truth
    seconds: float
    findings: list[Finding] = field(default_factory=list)

    @property
    def alarms(self) -> list[Finding]:
        """The warnings and errors (on a healthy run, each one is a false alarm)."""
        return [f for f in self.findings if f.severity != Severity.INFO]

    @property
    def fired(self) -> set[str]:
        return {f.rule for f in self.findings}


@dataclass
class Corpus:
    root: Path
    outcomes: dict[str, Outcome]
    train_s: float  # training the runs this session had to train (0 when all were stored)
    diagnose_s: float

    def healthy(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.run.healthy]

    def pathological(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if not o.run.healthy]


def _truths_path(root: Path) -> Path:
    return root / "truths.json"


def _load_truths(root: Path) -> dict[str, dict[str, object]]:
    path = _truths_path(root)
    return json.loads(path.read_text()) if path.exists() else {}


def build(
    root: Path,
    runs: Iterable[Run] = RUNS,
    *,
    retrain: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, tuple[Truth, float]], float]:
    """Train the ``runs`` that ``root`` does not hold (and those named in ``retrain``);
    return every run's (truth, training seconds) and the seconds spent training now."""
    stored = _load_truths(root)
    for name in retrain:
        entry = stored.pop(name, None)
        if entry is not None:
            shutil.rmtree(root / "runs" / str(entry["run_id"]), ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is fastest, and the machine is shared
    started = time.perf_counter()
    try:
        for run in runs:
            if run.name in stored:
                continue
            if progress is not None:
                progress(run.name)
            torch.manual_seed(0)
            t0 = time.perf_counter()
            truth = run.train(root / "runs")
            stored[run.name] = {
                "run_id": truth.run_id,
                "numbers": truth.numbers,
                "claims": truth.claims,
                "seconds": time.perf_counter() - t0,
            }
            # after every run: an interrupted build keeps what it trained
            _truths_path(root).write_text(json.dumps(stored, indent=1, sort_keys=True))
    finally:
        torch.set_num_threads(threads)
    trained_s = time.perf_counter() - started
    out = {
        name: (
            Truth(str(e["run_id"]), dict(e["numbers"]), dict(e["claims"])),  # type: ignore[call-overload]
            float(e["seconds"]),  # type: ignore[arg-type]
        )
        for name, e in stored.items()
    }
    return out, trained_s


def diagnose_corpus(root: Path, runs: Iterable[Run] = RUNS, **build_options: object) -> Corpus:
    """Build the corpus under ``root`` if needed, then diagnose it once."""
    runs = list(runs)
    truths, train_s = build(root, runs, **build_options)  # type: ignore[arg-type]
    outcomes = {r.name: Outcome(r, *truths[r.name]) for r in runs}
    t0 = time.perf_counter()
    store = open_store(root / "runs")
    by_run = {o.truth.run_id: o for o in outcomes.values()}
    rules = [r for r in load_rules() if r.id in RULES]
    for finding in diagnose(store, run_ids=list(by_run), rules=rules).findings:
        by_run[finding.run_id].findings.append(finding)
    return Corpus(root, outcomes, train_s, time.perf_counter() - t0)
