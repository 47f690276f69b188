"""Calibration of the diagnostic rules on the labelled corpus (tests/corpus).

Trains the corpus (or reuses a store given with ``--store``), diagnoses it once, and
measures every rule on the tuning half and on the held-out half separately
(``tests/corpus/split.py``: a pure function of the run names, healthy and pathological
runs split apart):

- false alarms: the share of healthy runs on which the rule raised a warning or an error
  (its info findings are counted apart: advice is not an alarm);
- precision and recall on the pathological runs: a run labelled with the rule is a true
  positive when it fires, a miss when it does not; firing on a pathological run neither
  labelled with the rule nor implying it (``also``) is a false positive; firing where it is
  implied is counted apart. Gap runs (classic mistakes no rule covers) are listed with
  whatever fired on them, outside the scores.

Thresholds are to be chosen on the tuning half only; the held-out table is the one to
publish, printed as markdown ready for the README. Writes everything, with each healthy
run's warnings and errors (message and evidence), to ``--out``.

    .venv/bin/python benchmarks/calibration.py --store /tmp/telemetry-corpus
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the corpus lives in tests/, which is not installed

from analysis import Finding, Severity  # noqa: E402
from tests.corpus.session import RULES, UNLABELLED, Corpus, Outcome, diagnose_corpus  # noqa: E402
from tests.corpus.split import HELD_OUT, SPLIT_SEED, TUNING, halves  # noqa: E402

HALVES = (TUNING, HELD_OUT)


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": f.severity.value,
        "subject": f.subject,
        "step": f.step,
        "message": f.message,
        "evidence": f.evidence,
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def score(rule: str, healthy: list[Outcome], broken: list[Outcome]) -> dict[str, Any]:
    """One rule on one half: false alarms on the healthy runs, precision and recall on the
    labelled pathological runs."""
    alarmed = [o.run.name for o in healthy if any(f.rule == rule for f in o.alarms)]
    advised = [
        o.run.name
        for o in healthy
        if any(f.rule == rule and f.severity == Severity.INFO for f in o.findings)
    ]
    labelled = [o for o in broken if o.run.expect]
    target = [o for o in labelled if rule in o.run.expect]
    fired_elsewhere = [o for o in labelled if rule not in o.run.expect and rule in o.fired]
    true_pos = [o.run.name for o in target if rule in o.fired]
    misses = [o.run.name for o in target if rule not in o.fired]
    false_pos = [o.run.name for o in fired_elsewhere if rule not in o.run.also]
    implied = [o.run.name for o in fired_elsewhere if rule in o.run.also]
    return {
        "healthy_runs": len(healthy),
        "false_alarms": len(alarmed),
        "info_on_healthy": len(advised),
        "false_alarm_rate": _rate(len(alarmed), len(healthy)),
        "false_alarm_runs": alarmed,
        "info_runs": advised,
        "labelled_runs": len(target),
        "true_positives": len(true_pos),
        "misses": misses,
        "false_positives": false_pos,
        "implied": implied,
        "precision": _rate(len(true_pos), len(true_pos) + len(false_pos)),
        "recall": _rate(len(true_pos), len(target)),
    }


def measure(corpus: Corpus) -> dict[str, Any]:
    healthy, broken = corpus.healthy(), corpus.pathological()
    side = halves([o.run.name for o in healthy], [o.run.name for o in broken])
    tables = {
        half: {
            "healthy_runs": sorted(o.run.name for o in healthy if side[o.run.name] == half),
            "healthy_runs_alarmed": sorted(
                o.run.name for o in healthy if side[o.run.name] == half and o.alarms
            ),
            "pathological_runs": sorted(o.run.name for o in broken if side[o.run.name] == half),
            "rules": {
                rule: score(
                    rule,
                    [o for o in healthy if side[o.run.name] == half],
                    [o for o in broken if side[o.run.name] == half],
                )
                for rule in RULES
            },
        }
        for half in HALVES
    }
    return {
        "split_seed": SPLIT_SEED,
        "halves": tables,
        "healthy_alarms": {
            o.run.name: [_finding(f) for f in o.alarms] for o in healthy if o.alarms
        },
        "healthy_info": {
            o.run.name: [_finding(f) for f in o.findings if f.severity == Severity.INFO]
            for o in healthy
            if len(o.findings) > len(o.alarms)
        },
        "pathological": {
            o.run.name: {
                "half": side[o.run.name],
                "level": o.run.level,
                "arch": o.run.arch,
                "expect": sorted(o.run.expect),
                "also": sorted(o.run.also),
                "gap": o.run.gap,
                "fired": sorted(o.fired),
                "missed": sorted(o.run.expect - o.fired),
                "unexpected": [
                    _finding(f) for f in o.findings if f.rule not in o.run.expect | o.run.also
                ],
            }
            for o in broken
        },
        "claims_failed": {
            name: o.truth.failed() for name, o in corpus.outcomes.items() if o.truth.failed()
        },
        "runs": {
            name: {
                "half": side[name],
                "healthy": o.run.healthy,
                "arch": o.run.arch,
                "optimizer": o.run.optimizer,
                "schedule": o.run.schedule,
                "task": o.run.task,
                "batch": o.run.batch,
                "train_s": round(o.seconds, 3),
                "numbers": o.truth.numbers,
            }
            for name, o in corpus.outcomes.items()
        },
        "unlabelled_rules": UNLABELLED,
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def table(result: dict[str, Any], half: str, *, markdown: bool) -> list[str]:
    part = result["halves"][half]
    rows = [
        (
            rule,
            f"{s['false_alarms']}/{s['healthy_runs']} ({_pct(s['false_alarm_rate'])})",
            f"{s['true_positives']}/{s['labelled_runs']} ({_pct(s['recall'])})"
            if s["labelled_runs"]
            else "-",
            _pct(s["precision"]),
            str(len(s["implied"])),
            str(s["info_on_healthy"]),
        )
        for rule, s in part["rules"].items()
    ]
    header = ("rule", "false alarms (healthy)", "recall", "precision", "implied", "info (healthy)")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join((f"`{r[0]}`", *r[1:])) + " |" for r in rows]
        return lines
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
        for row in (header, *rows)
    ]


def report(result: dict[str, Any], corpus: Corpus, command: str) -> list[str]:
    lines = []
    for half in HALVES:
        part = result["halves"][half]
        lines += [
            "",
            f"== {half} half: {len(part['healthy_runs'])} healthy, "
            f"{len(part['pathological_runs'])} pathological runs; "
            f"{len(part['healthy_runs_alarmed'])} healthy runs with a warning or error",
            *table(result, half, markdown=False),
        ]
    lines += ["", "== warnings and errors on healthy runs (false alarms)"]
    for name, findings in result["healthy_alarms"].items():
        half = result["runs"][name]["half"]
        for f in findings:
            lines.append(f"  {name} [{half}] {f['severity']} {f['rule']} ({f['subject']})")
            lines.append(f"      {f['message']}")
    lines += ["", "== misses and unexpected findings on pathological runs"]
    for name, p in result["pathological"].items():
        if p["missed"]:
            lines.append(f"  {name} [{p['half']}] missed {', '.join(p['missed'])}")
        for f in p["unexpected"]:
            lines.append(f"  {name} [{p['half']}] unexpected {f['severity']} {f['rule']}")
        if p["gap"]:
            lines.append(
                f"  {name} [{p['half']}] gap ({p['gap']}): fired {p['fired'] or 'nothing'}"
            )
    if result["claims_failed"]:
        lines += ["", "== runs that are not what their label says (fix the corpus first)"]
        lines += [f"  {name}: {claims}" for name, claims in result["claims_failed"].items()]
    lines += [
        "",
        f"== held-out half (split seed {SPLIT_SEED}), for the README",
        "",
        *table(result, HELD_OUT, markdown=True),
        "",
        f"{len(corpus.outcomes)} runs; trained now in {corpus.train_s:.0f} s "
        f"(stored runs took {sum(o.seconds for o in corpus.outcomes.values()):.0f} s to "
        f"train), diagnosed in {corpus.diagnose_s:.1f} s.",
        f"Rerun: {command}"
        + ("  (without --store it trains the corpus afresh)" if "--store" in command else ""),
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        type=Path,
        help="directory of a trained corpus to reuse (runs it lacks are trained into it); "
        "default: train into a temporary directory",
    )
    parser.add_argument("--retrain", nargs="*", default=[], help="corpus runs to train again")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/calibration.json")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/calibration.py" + (
        f" --store {shlex.quote(str(args.store))}" if args.store else ""
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="telemetry-corpus-") as scratch:
        root = args.store or Path(scratch)
        corpus = diagnose_corpus(
            root, retrain=args.retrain, progress=lambda n: print(f"training {n}", flush=True)
        )
        result = measure(corpus)
    result |= {
        "command": command,
        "train_s": round(corpus.train_s, 1),  # this invocation (0 when --store held every run)
        "corpus_train_s": round(sum(o.seconds for o in corpus.outcomes.values()), 1),
        "diagnose_s": round(corpus.diagnose_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    print("\n".join(report(result, corpus, command)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
