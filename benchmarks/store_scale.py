"""Analysis at sweep scale: a synthetic store, then `analyze` and the `runs` view timed.

Generates stores in the collector's own layout and schema (one compacted segment per
run and stream, written with pyarrow, no torch): runs x steps x parameters of
``tensors`` rows (grad, weight and update per parameter and step) plus train/val loss
scalars and lifecycle events per run, and the digest a closing collector writes
(``store.digest``, built by the same code from the same tables). Then, each in a
fresh process (for an honest peak RSS): opening the store and diagnosing every run
with every shipped rule (what `telemetry analyze` does), and listing runs: the
``runs`` view of a full open, and what ``telemetry runs`` does (a runs-only open
from the digests, then its listing with the best metrics). A second store holds
``--small-runs`` tiny runs to time the listing at sweep width.

    .venv/bin/python benchmarks/store_scale.py --rows 1e6 1e7 1e8
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
import pyarrow as pa
import pyarrow.parquet as pq

from store.digest import Activity, write_digest
from store.indexing import record_writer
from store.layout import SegmentName, stream_dir
from store.schema import Stream, schema_for

PARAMS = 60
KINDS = ("grad", "weight", "update")


def _table(stream: Stream, n: int, run_id: str, columns: dict[str, Any]) -> pa.Table:
    schema = schema_for(stream)
    envelope: dict[str, Any] = {
        "run_id": pa.array(np.full(n, run_id, dtype=object), pa.string()),
        "rank": np.zeros(n, dtype=np.int64),
        "attempt": np.zeros(n, dtype=np.int64),
        "seq": np.arange(n, dtype=np.int64),
        "epoch": np.zeros(n, dtype=np.int64),
        "wall_time": np.arange(n, dtype=np.int64) + 1_700_000_000_000_000,
    }
    data = {**envelope, **columns}
    arrays = [
        pa.array(data[f.name], f.type) if f.name in data else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _write(root: Path, run_id: str, stream: Stream, table: pa.Table, activity: Activity) -> None:
    directory = stream_dir(root, run_id, stream)
    directory.mkdir(parents=True, exist_ok=True)
    name = SegmentName(0, 0, 0, 1).filename()  # a compacted segment: as after close()
    pq.write_table(table, directory / name, compression="zstd")
    activity.add(stream, table)  # what the writer thread does after publishing


def write_run(root: Path, run_id: str, steps: int, params: int, rng: np.random.Generator) -> int:
    """One finished run; returns its number of ``tensors`` rows."""
    per_step = params * len(KINDS)
    n = steps * per_step
    step = np.repeat(np.arange(1, steps + 1, dtype=np.int64), per_step)
    names = np.array([f"layer{i}.weight" for i in range(params)], dtype=object)
    decay = np.exp(-step / max(steps, 1)).astype(np.float64)
    norm = rng.lognormal(0.0, 0.3, n) * decay
    tensors = {
        "step": step,
        "param": pa.array(np.tile(np.repeat(names, len(KINDS)), steps), pa.string()),
        "kind": pa.array(np.tile(np.array(KINDS, dtype=object), steps * params), pa.string()),
        "numel": np.full(n, 4096, dtype=np.int64),
        "norm": norm,
        "mean": rng.normal(0, 1e-3, n),
        "std": norm / 64,
        "min": -norm / 10,
        "max": norm / 10,
        "abs_max": norm / 10,
        "zero_frac": np.zeros(n),
        "nonfinite": np.zeros(n, dtype=np.int64),
    }
    activity = Activity()
    _write(root, run_id, Stream.TENSORS, _table(Stream.TENSORS, n, run_id, tensors), activity)
    loss_steps = np.arange(1, steps + 1, dtype=np.int64)
    train = 2.0 * np.exp(-loss_steps / steps * 3) + rng.normal(0, 0.02, steps)
    val_steps = loss_steps[:: max(steps // 20, 1)]
    val = 2.0 * np.exp(-val_steps / steps * 2.5) + 0.05
    m = steps + len(val_steps)
    scalars = {
        "step": np.concatenate([loss_steps, val_steps]),
        "name": pa.array(np.full(m, "loss", dtype=object), pa.string()),
        "split": pa.array(
            np.array(["train"] * steps + ["val"] * len(val_steps), dtype=object), pa.string()
        ),
        "value": np.concatenate([train, val]),
    }
    _write(root, run_id, Stream.SCALARS, _table(Stream.SCALARS, m, run_id, scalars), activity)
    events = {
        "step": np.array([0, steps], dtype=np.int64),
        "kind": pa.array(["run_started", "run_finished"], pa.string()),
        "payload": pa.array(
            [json.dumps({"name": run_id, "config": {"lr": float(rng.uniform(1e-4, 1e-1))}}), "{}"],
            pa.string(),
        ),
    }
    _write(root, run_id, Stream.EVENTS, _table(Stream.EVENTS, 2, run_id, events), activity)
    write_digest(root / run_id, run_id, 0, 0, activity)
    return n


def index_runs(root: Path) -> None:
    """Each run's line in the store's run index, as its closing writer appends it;
    after all runs are written, so that no run waits for its directories to settle."""
    for run in sorted(root.iterdir()):
        if not run.name.startswith("."):
            record_writer(run, 0, 0)


def make_store(root: Path, rows: int, params: int = PARAMS) -> dict[str, Any]:
    """About ``rows`` tensors rows in runs of at most ~1M rows each."""
    per_step = params * len(KINDS)
    steps_total = max(rows // per_step, 1)
    runs = max(1, round(rows / 1_000_000))
    return make_sweep(root, runs, max(steps_total // runs, 1), params)


def make_sweep(root: Path, runs: int, steps: int, params: int) -> dict[str, Any]:
    """``runs`` finished runs of ``steps`` steps and ``params`` parameters each."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    total = sum(write_run(root, f"sweep-{i:05d}", steps, params, rng) for i in range(runs))
    index_runs(root)
    disk = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    return {
        "runs": runs,
        "steps": steps,
        "params": params,
        "tensors_rows": total,
        "bytes_on_disk": disk,
        "generate_s": time.perf_counter() - t0,
    }


# Peak RSS is the process's VmHWM: getrusage's ru_maxrss would carry over the peak of
# this (forking) process, which holds a run's generated arrays, across exec.
_PROBE = """
import json, re, sys, time
from pathlib import Path
t0 = time.perf_counter()
from analysis import open_store  # the rule engine only where it runs (analysis is lazy)
store = open_store(sys.argv[1], runs_only=sys.argv[2] == "listing")
t_open = time.perf_counter() - t0
if sys.argv[2] == "listing":  # what `telemetry runs` does
    from telemetry.commands.runs import list_runs
    out = {"runs": list_runs(store).height}
elif sys.argv[2] == "analyze":  # what `telemetry analyze --no-cache` does
    from analysis import diagnose
    d = diagnose(store)
    out = {"findings": len(d.findings), "not_evaluated": len(d.not_evaluated)}
elif sys.argv[2] == "query":  # a user's question over the whole history
    rows = store.sql(
        "SELECT run_id, param, max(norm) FILTER (WHERE kind = 'grad') AS max_grad_norm, "
        "arg_max(norm, step) FILTER (WHERE kind = 'weight') AS last_weight_norm "
        "FROM tensors GROUP BY ALL"
    )
    out = {"rows": rows.height}
elif sys.argv[2] == "report":  # what `telemetry report ROOT --max-runs 0` does
    from analysis import diagnose
    from reports import write_report
    d = diagnose(store)
    t_diag = time.perf_counter() - t0 - t_open
    path = write_report(store, d, sys.argv[3], max_runs=None)
    out = {"runs": d.runs.height, "page_bytes": path.stat().st_size, "diagnose_s": t_diag}
else:
    out = {"runs": store.sql("SELECT * FROM runs").height}
out.update(open_s=t_open, total_s=time.perf_counter() - t0,
           peak_rss_mb=int(re.search(r"VmHWM:\\s+(\\d+) kB",
                                     Path("/proc/self/status").read_text()).group(1)) / 1024)
print(json.dumps(out))
"""


def cli_seconds(*args: str, repeat: int = 3) -> float:
    """Median wall time of ``telemetry ARGS`` as a user runs it (a fresh process, the
    table on stdout), interpreter start included."""
    telemetry = Path(sys.executable).with_name("telemetry")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([str(telemetry), *args], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def probe(root: Path, what: str) -> dict[str, Any]:
    page = str(root.parent / "report.html")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(root), what, page], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--rows", nargs="*", type=float, default=[1e6, 1e7])
    ap.add_argument("--sweep", nargs="*", type=int, default=[], metavar="RUNS")
    ap.add_argument("--steps", type=int, default=20_000, help="steps of a --sweep run")
    ap.add_argument("--params", type=int, default=16, help="parameters of a --sweep run")
    ap.add_argument("--small-runs", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="where to build the stores (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/store_scale.json"))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(dir=args.dir))
    results: dict[str, Any] = {"stores": []}
    try:
        for rows in args.rows:
            root = base / f"rows-{int(rows)}"
            info = make_store(root, int(rows))
            info["analyze"] = probe(root, "analyze")
            info["runs_view"] = probe(root, "runs")
            info["runs_listing"] = probe(root, "listing")
            results["stores"].append(info)
            print(json.dumps(info), flush=True)
            shutil.rmtree(root)
        for runs in args.sweep:
            root = base / f"sweep-{runs}"
            info = make_sweep(root, runs, args.steps, args.params)
            for what in ("analyze", "runs_listing", "query", "report"):
                info[what] = probe(root, what.removeprefix("runs_"))
            info["runs_cli_s"] = cli_seconds("runs", str(root))
            results.setdefault("sweeps", []).append(info)
            print(json.dumps(info), flush=True)
            shutil.rmtree(root)
        if args.small_runs:
            root = base / "small-runs"
            rng = np.random.default_rng(1)
            t0 = time.perf_counter()
            for i in range(args.small_runs):
                write_run(root, f"small-{i:05d}", 5, 2, rng)
            index_runs(root)
            small = {"runs": args.small_runs, "generate_s": time.perf_counter() - t0}
            # The first listing parses the 10,000 index lines (and keeps them in the
            # index's snapshot); later ones parse only lines appended since.
            small["runs_listing_first"] = probe(root, "listing")
            small["runs_listing"] = probe(root, "listing")
            small["runs_cli_s"] = cli_seconds("runs", str(root))
            small["runs_view"] = probe(root, "runs")
            results["small_runs"] = small
            print(json.dumps(small), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
