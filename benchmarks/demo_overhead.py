"""Step-time overhead of the collector on the demo CNN (digits, batch 64, Adam).

Arms run alternately in fresh processes (none, collector, none, collector, ...) so
that drift of the machine hits both; each process trains `--steps` steps after
`--warmup` steps and reports its per-step times. A third measurement interleaves the
arms step by step in one process (two identical models, one with the collector),
which cancels drift on a noisy VM best. Prints the ratios of mean and of median
step time (collector / none) and writes JSON.

    .venv/bin/python benchmarks/demo_overhead.py --rounds 3 --steps 400 --out bench-demo.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _interleaved(steps: int, warmup: int, options: dict[str, Any]) -> dict[str, list[float]]:
    import torch
    from torch import nn

    from collector import Collector
    from telemetry.demo import SmallCNN, load_digits_tensors

    torch.set_num_threads(1)
    x, y, _, _ = load_digits_tensors()
    loss_fn = nn.CrossEntropyLoss()
    arms = {}
    for arm in ("none", "collector"):
        torch.manual_seed(0)
        model = SmallCNN(0.25)
        arms[arm] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    times: dict[str, list[float]] = {"none": [], "collector": []}
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        model, opt = arms["collector"]
        tel = Collector(root, name="bench", model=model, optimizer=opt, **options)
        for i in range(warmup + steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            for arm in ("none", "collector") if i % 2 == 0 else ("collector", "none"):
                model, opt = arms[arm]
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                if arm == "collector":
                    tel.log({"loss": loss}, split="train")
                if i >= warmup:
                    times[arm].append(time.perf_counter() - t0)
        tel.close()
    return times


def _child(arm: str, steps: int, warmup: int, options: dict[str, Any]) -> None:
    import torch
    from torch import nn

    from telemetry.demo import SmallCNN, load_digits_tensors

    if arm == "interleaved":
        print(json.dumps({"arm": arm, "times": _interleaved(steps, warmup, options)}))
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y, _, _ = load_digits_tensors()
    model = SmallCNN(0.25)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        tel = None
        if arm == "collector":
            from collector import Collector

            tel = Collector(root, name="bench", model=model, optimizer=opt, **options)
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            idx = torch.randint(0, len(x), (64,), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if tel is not None:
                tel.log({"loss": loss}, split="train")
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        disk = 0
        if tel is not None:
            tel.close()
            disk = sum(p.stat().st_size for p in Path(root).rglob("*.parquet"))
    print(json.dumps({"arm": arm, "times": times, "bytes_on_disk": disk}))


def _run_child(arm: str, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", arm, "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--options", json.dumps(options)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh-process rounds (0: skip)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--stats-every", type=int, default=1)
    ap.add_argument("--activations-every", type=int, default=20)
    ap.add_argument("--samples-every", type=int, default=100)
    ap.add_argument("--nan-check", type=int, default=1, help="every N steps (0: off)")
    ap.add_argument("--out", type=Path, default=Path("bench-demo-overhead.json"))
    ap.add_argument("--child", choices=["none", "collector", "interleaved"], help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.steps, args.warmup, json.loads(args.options))
        return
    options = {
        "stats_every": args.stats_every,
        "activations_every": args.activations_every,
        "samples_every": args.samples_every,
        "nan_check": args.nan_check,
    }
    per_arm: dict[str, list[float]] = {"none": [], "collector": []}
    disk = 0
    for r in range(args.rounds):
        for arm in ("none", "collector") if r % 2 == 0 else ("collector", "none"):
            result = _run_child(arm, args, options)
            per_arm[arm] += result["times"]
            disk = max(disk, result["bytes_on_disk"])
    inter = _run_child("interleaved", args, options)["times"]
    report: dict[str, Any] = {
        "workload": "demo SmallCNN, digits 8x8, batch 64, Adam, torch 1 thread",
        "collector_options": options,
        "interleaved_ratio_mean": statistics.fmean(inter["collector"])
        / statistics.fmean(inter["none"]),
        "interleaved_ratio_median": statistics.median(inter["collector"])
        / statistics.median(inter["none"]),
        "interleaved_none_mean_ms": 1e3 * statistics.fmean(inter["none"]),
    }
    print(f"collector options: {options}")
    if args.rounds:
        summary = {
            arm: {
                "mean_ms": 1e3 * statistics.fmean(t),
                "median_ms": 1e3 * statistics.median(t),
                "steps": len(t),
            }
            for arm, t in per_arm.items()
        }
        report |= {
            "arms": summary,
            "ratio_mean": summary["collector"]["mean_ms"] / summary["none"]["mean_ms"],
            "ratio_median": summary["collector"]["median_ms"] / summary["none"]["median_ms"],
            "bytes_on_disk_per_run": disk,
        }
        for arm, st in summary.items():
            print(
                f"{arm:<10} mean {st['mean_ms']:.3f} ms/step  "
                f"median {st['median_ms']:.3f} ms/step  ({st['steps']} steps)"
            )
        print(
            f"fresh processes, collector/none: mean {report['ratio_mean']:.3f}x  "
            f"median {report['ratio_median']:.3f}x"
        )
    print(
        f"interleaved in one process, collector/none: mean "
        f"{report['interleaved_ratio_mean']:.3f}x  median {report['interleaved_ratio_median']:.3f}x"
    )
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
