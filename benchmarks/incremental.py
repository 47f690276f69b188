"""Incremental analysis: re-analysing a store of many runs after one new run.

Writes ``--runs`` small finished runs (``store_scale.write_run``: the collector's
layout, 5 steps x 2 parameters each), analyses the store once with the findings cache
(``analysis.cache``) to fill it, adds one run, and times ``telemetry analyze ROOT``
(JSON) in a fresh process each: without the cache (``--no-cache``: every run
evaluated, what every analysis cost before the cache) and with it (the new run
evaluated, the others read from the cache). A probe in a fresh process splits the
same two into opening the store (with the cache, a runs-only open as the command's)
and diagnosing. Both outputs are checked equal.

    .venv/bin/python benchmarks/incremental.py --runs 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_scale import write_run  # noqa: E402  (a sibling script, not a package)

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from analysis import diagnose, open_store
store = open_store(sys.argv[1], runs_only=sys.argv[2] == "cache")  # as telemetry analyze
t_open = time.perf_counter() - t0
d = diagnose(store, cache=sys.argv[2] == "cache")
print(json.dumps({"open_s": t_open, "diagnose_s": time.perf_counter() - t0 - t_open,
                  "evaluated_runs": len(d.evaluated), "findings": len(d.findings)}))
"""


def _telemetry() -> str:
    return str(Path(sys.executable).with_name("telemetry"))


def analyze(root: Path, *extra: str) -> tuple[float, str]:
    """Wall seconds of ``telemetry analyze ROOT --format json`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [_telemetry(), "analyze", str(root), "--format", "json", "--fail-on", "never", "-q"]
        + list(extra),
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - t0, proc.stdout


def probe(root: Path, mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(root), mode], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="timings per mode; the best is kept")
    ap.add_argument("--dir", type=Path, help="where to build the store (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/incremental.json"))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(dir=args.dir))
    root = base / "store"
    rng = np.random.default_rng(2)
    try:
        t0 = time.perf_counter()
        for i in range(args.runs):
            write_run(root, f"small-{i:05d}", 5, 2, rng)
        results: dict[str, Any] = {"runs": args.runs, "generate_s": time.perf_counter() - t0}
        results["fill_cache_s"], _ = analyze(root)
        write_run(root, f"small-{args.runs:05d}", 5, 2, rng)  # the one new run
        uncached, cached = [], []
        outputs = set()
        for _ in range(args.repeat):
            # --no-cache first: it neither reads nor writes the cache, so each cached
            # analysis below finds the cache as the fill left it (one run new)
            seconds, out = analyze(root, "--no-cache")
            uncached.append(seconds)
            outputs.add(out)
            snapshot = (root / ".cache" / "findings.parquet").read_bytes()
            seconds, out = analyze(root)
            cached.append(seconds)
            outputs.add(out)
            (root / ".cache" / "findings.parquet").write_bytes(snapshot)  # one run new again
        results["analyze_no_cache_s"] = min(uncached)
        results["analyze_one_new_run_s"] = min(cached)
        results["identical_output"] = len(outputs) == 1
        results["probe_no_cache"] = probe(root, "no-cache")
        results["probe_one_new_run"] = probe(root, "cache")
        results["probe_nothing_new"] = probe(root, "cache")
        results["command"] = f".venv/bin/python benchmarks/incremental.py --runs {args.runs}"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
