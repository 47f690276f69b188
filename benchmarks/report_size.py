"""Report size and generation time for a long run: 100k steps, 60 parameters (issue: <= 5 MB).

Writes one synthetic run through the collector's real write path (``Writer``) into
a temporary store, then times ``analysis.diagnose`` and ``reports.write_report``
on it and prints the report's size. The run has what a long training records:

* train loss, accuracy and learning rate at every step; val loss and accuracy
  every 1,000 steps; a few NaN losses (kept as markers, never dropped);
* grad, weight and update statistics of ``--params`` parameters every
  ``--stats-every`` steps (the collector's default overhead budget samples far
  more sparsely; ``--stats-every 1`` is the worst case);
* activation statistics of ``--params / 2`` modules every 100 steps;
* step timing (data wait, compute, throughput) at every step;
* ``--metrics`` more train metrics at every step, every tenth with a val split every
  100 steps (the issue's store that made a 121.7 MB page: 1,000 metrics x 2,000 steps);
* ``--runs`` copies of the run (different names and learning rates).

    .venv/bin/python benchmarks/report_size.py                  # ~2 min on 2 cores
    .venv/bin/python benchmarks/report_size.py --stats-every 1  # 18M tensor rows
    .venv/bin/python benchmarks/report_size.py --steps 2000 --metrics 1000
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from store.records import Rows
from store.schema import Stream
from store.writer import Writer

T0 = 1_700_000_000.0
LIMIT_BYTES = 5_000_000
"""The issue's bound for a 100k-step run with 60 parameters."""


def _event(step: int, kind: str, payload: dict[str, Any]) -> Rows:
    cols = {"kind": [kind], "payload": [json.dumps(payload)]}
    return Rows(Stream.EVENTS, step, None, T0 + step, cols)


def write_run(
    root: Path,
    *,
    steps: int,
    params: int,
    stats_every: int,
    metrics: int = 0,
    run: str = "long-run",
    seed: int = 0,
) -> dict[str, int]:
    """Publish the synthetic run under ``root``; returns the rows written per stream."""
    rng = np.random.default_rng(seed)
    # Names as long as a transformer's: they are a good part of a chart's bytes.
    modules = [f"encoder.layers.{i}.mlp.fc" for i in range(max(1, params // 2))]
    names = [f"{modules[i // 2]}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(params)]
    writer = Writer(root, run, flush_every_s=5.0, max_queue=10_000_000)
    counts = dict.fromkeys(("scalars", "tensors", "activations", "system"), 0)
    config = {"lr": 3e-4 * (1 + seed), "batch_size": 128, "optimizer": "adamw", "params": params}
    writer.put(_event(0, "run_started", {"name": run, "config": config}), essential=True)
    extra = [f"metric.{j:04d}" for j in range(metrics)]
    with_val = extra[::10]
    s = np.arange(1, steps + 1)
    loss = 2.5 * np.exp(-s / (steps / 5)) + 0.1 + 0.05 * rng.standard_normal(steps)
    loss[[steps // 3, steps // 3 + 1, 2 * steps // 3]] = math.nan
    step_time = 0.05 + 0.01 * rng.random(steps)
    data_time = 0.005 + 0.02 * (rng.random(steps) < 0.01)
    depth = np.linspace(0.01, 1.0, params)
    for i, step in enumerate(s.tolist()):
        wall = T0 + step
        cols: dict[str, list[Any]] = {
            "name": ["loss", "acc", "lr"],
            "split": ["train"] * 3,
            "value": [float(loss[i]), float(1 - loss[i] / 3), 3e-4 * (1 - i / steps)],
        }
        writer.put(Rows(Stream.SCALARS, step, None, wall, cols))
        counts["scalars"] += 3
        if extra:
            level = math.exp(-i / steps)
            cols = {
                "name": extra,
                "split": ["train"] * metrics,
                "value": (level + 0.01 * rng.standard_normal(metrics)).tolist(),
            }
            writer.put(Rows(Stream.SCALARS, step, None, wall, cols))
            counts["scalars"] += metrics
            if step % 100 == 0 and with_val:
                cols = {"name": with_val, "split": ["val"] * len(with_val)}
                cols["value"] = [level * 1.1] * len(with_val)
                writer.put(Rows(Stream.SCALARS, step, None, wall, cols))
                counts["scalars"] += len(with_val)
        sys_cols: dict[str, list[Any]] = {
            "step_time_s": [float(step_time[i])],
            "data_time_s": [float(data_time[i])],
            "compute_time_s": [float(step_time[i] - data_time[i])],
            "samples_per_s": [128 / float(step_time[i])],
        }
        writer.put(Rows(Stream.SYSTEM, step, None, wall, sys_cols))
        counts["system"] += 1
        if step % 1000 == 0:
            cols = {
                "name": ["loss", "acc"],
                "split": ["val", "val"],
                "value": [float(loss[i]) * 1.1, float(1 - loss[i] / 2.8)],
            }
            writer.put(Rows(Stream.SCALARS, step, step // 1000, wall, cols))
            counts["scalars"] += 2
        if step % stats_every == 0 or step <= 20:
            norm = depth * (1 + 0.2 * rng.standard_normal(params)) * math.exp(-i / steps)
            weight = 10 * depth * (1 + i / steps)
            update = weight * 1e-3 * (1 + rng.random(params))
            rows: dict[str, list[Any]] = {"param": [], "kind": []}
            for stat in ("numel", "norm", "mean", "std", "min", "max", "abs_max"):
                rows[stat] = []
            for kind, values in (("grad", norm), ("weight", weight), ("update", update)):
                v = values.tolist()
                rows["param"] += names
                rows["kind"] += [kind] * params
                rows["numel"] += [4096] * params
                rows["norm"] += v
                rows["mean"] += [0.0] * params
                rows["std"] += [x / 64 for x in v]
                rows["min"] += [-x / 8 for x in v]
                rows["max"] += [x / 8 for x in v]
                rows["abs_max"] += [x / 8 for x in v]
            writer.put(Rows(Stream.TENSORS, step, None, wall, rows))
            counts["tensors"] += 3 * params
        if step % 100 == 0:
            acts = {
                "module": modules,
                "module_type": ["Linear" if j % 2 else "ReLU" for j in range(len(modules))],
                "numel": [8192] * len(modules),
                "std": (0.5 + 0.1 * rng.random(len(modules))).tolist(),
                "zero_frac": (0.5 * rng.random(len(modules))).tolist(),
            }
            writer.put(Rows(Stream.ACTIVATIONS, step, None, wall, acts))
            counts["activations"] += len(modules)
    writer.put(_event(steps, "run_finished", {"steps": steps}), essential=True)
    writer.close(timeout=None)
    return counts


def measure(
    steps: int,
    params: int,
    stats_every: int,
    out_html: Path | None,
    *,
    metrics: int = 0,
    runs: int = 1,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        counts: dict[str, int] = {}
        for r in range(runs):
            name = "long-run" if runs == 1 else f"long-run-{r}"
            written = write_run(
                root,
                steps=steps,
                params=params,
                stats_every=stats_every,
                metrics=metrics,
                run=name,
                seed=r,
            )
            counts = {k: counts.get(k, 0) + v for k, v in written.items()}
        t_write = time.perf_counter() - t0
        html = out_html or Path(tmp) / "report.html"
        # Diagnose and report in a fresh process: its peak RSS is the report's own, not
        # the synthetic writer's.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            timings = pool.apply(_report, (root, html))
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        size = html.stat().st_size
    return {
        "steps": steps,
        "params": params,
        "stats_every": stats_every,
        "metrics": metrics,
        "runs": runs,
        "rows": counts,
        "store_write_s": round(t_write, 1),
        **timings,
        "peak_rss_mb": round(peak_kib / 1024),
        "report_bytes": size,
        "report_mb": round(size / 1e6, 2),
        "limit_bytes": LIMIT_BYTES,
        "within_limit": size <= LIMIT_BYTES,
    }


def _report(root: Path, html: Path) -> dict[str, float]:
    """Diagnose the store and write its report; the seconds each took."""
    from analysis import diagnose, open_store
    from reports import write_report
    from reports.assets import javascript_bundle

    javascript_bundle()  # built once per process (~3 s): not the report's own cost
    store = open_store(root)
    t1 = time.perf_counter()
    diagnosis = diagnose(store)
    t_diagnose = time.perf_counter() - t1
    t2 = time.perf_counter()
    write_report(store, diagnosis, html)
    t_report = time.perf_counter() - t2
    return {"diagnose_s": round(t_diagnose, 1), "report_s": round(t_report, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--params", type=int, default=60)
    parser.add_argument("--stats-every", type=int, default=10)
    parser.add_argument("--metrics", type=int, default=0, help="More train metrics per step.")
    parser.add_argument("--runs", type=int, default=1, help="Copies of the run.")
    parser.add_argument("--html", type=Path, default=None, help="Keep the report here.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_size.json"))
    args = parser.parse_args()
    result = measure(
        args.steps, args.params, args.stats_every, args.html, metrics=args.metrics, runs=args.runs
    )
    print(
        f"{args.runs} run(s) of {args.steps:,} steps, {args.params} parameters (stats every "
        f"{args.stats_every}), {args.metrics} more metrics: "
        f"report {result['report_mb']} MB ({result['report_bytes']:,} bytes, limit "
        f"{LIMIT_BYTES / 1e6:.0f} MB) in {result['report_s']} s, peak RSS "
        f"{result['peak_rss_mb']} MB (diagnose and report); diagnose "
        f"{result['diagnose_s']} s; rows {result['rows']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
