"""The Spark engine against the in-process one, on the same store, side by side.

Writes ``--runs`` small finished runs (``store_scale.write_run``) and ``--sweep`` runs
of ``--steps`` steps x ``--params`` parameters (``store_scale.make_sweep``), then times
``telemetry analyze ROOT --format json --no-cache`` in a fresh process with
``--engine duckdb`` and with ``--engine spark --master local[N]`` (the JVM's start
included: what a user waits for), alternating, and checks the two outputs are the
same bytes. On one machine Spark only adds its start and scheduling; it pays where
its executors are many machines.

    .venv/bin/python benchmarks/spark_engine.py --runs 1000 --sweep 4 --rounds 2
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
from store_scale import index_runs, make_sweep, write_run  # noqa: E402  (a sibling script)


def analyze(root: Path, *engine: str) -> tuple[float, bytes]:
    """Wall seconds and stdout of ``telemetry analyze ROOT --format json --no-cache``."""
    telemetry = str(Path(sys.executable).with_name("telemetry"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [telemetry, "analyze", str(root), "--format", "json", "--no-cache", "--fail-on", "never"]
        + ["-q", *engine],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - t0, proc.stdout


def compare(root: Path, rounds: int, master: str) -> dict[str, Any]:
    local, spark, same = [], [], True
    for _ in range(rounds):
        t_local, out_local = analyze(root)
        t_spark, out_spark = analyze(root, "--engine", "spark", "--master", master)
        local.append(t_local)
        spark.append(t_spark)
        same = same and out_local == out_spark
    best_local, best_spark = min(local), min(spark)
    return {
        "duckdb_s": best_local,
        "spark_s": best_spark,
        "spark_over_duckdb": best_spark / best_local,
        "identical_json": same,
        "rounds": rounds,
        "master": master,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="small runs in the first store")
    ap.add_argument("--sweep", type=int, default=4, help="long runs in the second store")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--params", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/spark_engine.json"))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp())
    results: dict[str, Any] = {}
    try:
        small = base / "small"
        rng = np.random.default_rng(1)
        for i in range(args.runs):
            write_run(small, f"small-{i:05d}", 5, 2, rng)
        index_runs(small)
        results["small_runs"] = {"runs": args.runs, **compare(small, args.rounds, args.master)}
        print(json.dumps(results["small_runs"]), flush=True)
        if args.sweep:
            sweep = base / "sweep"
            info = make_sweep(sweep, args.sweep, args.steps, args.params)
            results["sweep"] = {**info, **compare(sweep, args.rounds, args.master)}
            print(json.dumps(results["sweep"]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
