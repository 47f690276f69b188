"""The corpus's one training session.

Every run of ``tests/corpus`` trains once per pytest session into one store and the
store is diagnosed once (``session.diagnose_corpus``); the tests read the outcome. Set
``TELEMETRY_CORPUS_STORE=/some/dir`` to keep the trained store there and reuse it in the
next session (only runs it lacks are trained): handy while iterating on a rule, since
the rules are evaluated afresh every time. ``benchmarks/calibration.py --store`` reads
the same directory. The false alarms and misses of the session are summarised at its end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.session import Corpus, diagnose_corpus

STORE_ENV = "TELEMETRY_CORPUS_STORE"
SUMMARY: list[str] = []


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    kept = os.environ.get(STORE_ENV)
    root = Path(kept) if kept else tmp_path_factory.mktemp("corpus")
    result = diagnose_corpus(root)
    healthy, broken = result.healthy(), result.pathological()
    alarmed = [o for o in healthy if o.alarms]
    missed = [o for o in broken if o.run.expect - o.fired]
    SUMMARY.extend(
        [
            f"{len(healthy)} healthy and {len(broken)} pathological runs in {root / 'runs'}; "
            f"trained now in {result.train_s:.0f} s, diagnosed in {result.diagnose_s:.1f} s",
            f"healthy runs with a warning or error: {len(alarmed)}; pathological runs missing "
            f"an expected rule: {len(missed)} "
            "(benchmarks/calibration.py prints them rule by rule)",
        ]
    )
    return result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("labelled corpus")
        for line in SUMMARY:
            terminalreporter.write_line(line)
