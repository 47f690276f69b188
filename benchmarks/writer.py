"""Writer throughput: ``tensors`` rows per second through the real write path, one core.

Produces what the collector produces on a sampled step of a model with ``--params``
parameters (grad, weight and update rows per parameter, host values already derived:
``param``/``kind`` as Arrow arrays built once, each statistic a packed array, as
``collector.params`` hands them over) and pushes ``--rows`` rows through
``Writer.put`` into a store on disk, then closes the writer (every row flushed,
fsynced and published). Reports rows/s for the whole path and for the
training-thread side alone (``put``), and writes JSON.

    .venv/bin/python benchmarks/writer.py --rows 2000000 --out benchmarks/results/writer.json
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from store.records import Rows
from store.schema import Stream
from store.writer import Writer

STATS = ("numel", "norm", "mean", "std", "min", "max", "abs_max", "zero_frac", "nonfinite")


def step_rows(step: int, labels: dict[str, pa.Array], rng: random.Random) -> Rows:
    """One sampled step's ``tensors`` rows: grad, weight and update per parameter."""
    n = len(labels["param"])
    columns: dict[str, Any] = dict(labels)
    for stat in STATS:
        if stat in ("numel", "nonfinite"):
            columns[stat] = array.array("q", [4096 if stat == "numel" else 0] * n)
        else:
            columns[stat] = array.array("d", [rng.random() for _ in range(n)])
    return Rows(Stream.TENSORS, step, 0, time.time(), columns)


def measure(total_rows: int, params: int) -> dict[str, Any]:
    rng = random.Random(0)
    names = [f"layer{i}.weight" for i in range(params)]
    labels = {
        "param": pa.array([n for n in names for _ in range(3)], pa.string()),
        "kind": pa.array(["grad", "weight", "update"] * params, pa.string()),
    }
    per_step = 3 * params
    steps = max(total_rows // per_step, 1)
    batches = [step_rows(s, labels, rng) for s in range(1, min(steps, 200) + 1)]
    with tempfile.TemporaryDirectory() as root:
        writer = Writer(Path(root), "bench-run", flush_every_s=2.0, max_queue=1_000_000)
        t0 = time.perf_counter()
        for s in range(steps):
            writer.put(batches[s % len(batches)])
        t_put = time.perf_counter() - t0
        writer.close()
        t_all = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in Path(root).rglob("*.parquet"))
        written, dropped = writer.rows_written, writer.rows_dropped
    rows = steps * per_step
    return {
        "rows": rows,
        "params": params,
        "rows_written": written,
        "rows_dropped": dropped,
        "seconds": t_all,
        "rows_per_s": rows / t_all,
        "put_rows_per_s": rows / t_put,
        "bytes_on_disk": disk,
        "bytes_per_row": disk / rows,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--params", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/writer.json"))
    args = ap.parse_args()
    result = measure(args.rows, args.params)
    print(
        f"writer: {result['rows']:,} tensors rows in {result['seconds']:.2f} s = "
        f"{result['rows_per_s']:,.0f} rows/s end to end "
        f"(put alone: {result['put_rows_per_s']:,.0f} rows/s); "
        f"dropped {result['rows_dropped']}; {result['bytes_per_row']:.1f} bytes/row on disk"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
