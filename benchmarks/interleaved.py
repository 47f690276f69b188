"""Collector overhead measured step by step in one process, beside the same model bare.

``benchmarks/overhead.py`` runs each arm in its own process, as the issue asks; on this
VM two processes of the very same arm differ by up to 30 % in mean step time (the
``none`` arm of the CNN measured 6.1 and 8.4 ms within an hour), more than the
collector's whole default cost. Here both arms share one process, one machine state
and the same batches: two identical copies of the model, one watched by a
``Collector``, take turns step by step (A B B A ...; SGD with momentum at a constant
learning rate), and the ratio is that of their mean step times after the collector's
dense start. The machine's drift hits both
alike. It underestimates what the writer thread costs (its work slows both arms).
The overhead budget sees the other copy's step in its step time (twice the
training's own): left at its default it samples twice as densely as in a real run.
The default arms are therefore given half the budget (``overhead_budget=0.015``),
which makes the stride the same as alone; the budget's own figures (``step_ms``)
still show both copies' time.

    .venv/bin/python benchmarks/interleaved.py --out benchmarks/results/interleaved.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from overhead import FULL, WORKLOADS, _workload, train_step  # noqa: E402

from collector.budget import DENSE_STEPS  # noqa: E402

HALF = {"overhead_budget": 0.015}  # the budget sees both copies' steps (module docstring)
ARMS = {
    "default": HALF,
    "default, nan_check=0": HALF | {"nan_check": 0},
    "guarded": HALF | {"on_nonfinite": "stop"},  # reads the gradient norm every step
    "full": FULL,
}


def measure(workload: str, arm: str, steps: int) -> dict[str, Any]:
    import torch

    from collector import Collector

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(1)
    bare, batch_at, loss_fn = _workload(workload, device)
    watched = copy.deepcopy(bare)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (bare, watched)]
    times: list[list[float]] = [[], []]
    with tempfile.TemporaryDirectory() as root:
        tel = Collector(root, name=workload, model=watched, optimizer=opts[1], **ARMS[arm])
        for i in range(steps):
            for k in (0, 1) if i % 2 else (1, 0):
                model, opt = (bare, watched)[k], opts[k]
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loss = train_step(model, opt, batch_at, loss_fn, i)
                if k == 1:
                    tel.log({"loss": loss}, split="train")
                if cuda:
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t0)
        controller = tel._steps.budget
        budget = controller.measured if controller is not None else {}
        strides = controller.strides if controller is not None else None
        tel.close()
    skip = DENSE_STEPS + 5  # the dense start, and a few steps of warm-up
    none, ours = (statistics.fmean(t[skip:]) * 1e3 for t in times)
    return {
        "workload": workload,
        "arm": arm,
        "device": str(device),
        "steps": steps,
        "none_ms": none,
        "collector_ms": ours,
        "ratio": ours / none,
        "median_ratio": statistics.median(times[1][skip:]) / statistics.median(times[0][skip:]),
        "stats_every": None if strides is None else strides.stats_every,
        "budget": budget,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/interleaved.json"))
    args = ap.parse_args()
    steps = {"cnn": 1500, "resnet18": 150}
    results = []
    for workload in args.workloads:
        for arm in args.arms:
            r = measure(workload, arm, steps[workload])
            results.append(r)
            print(
                f"{workload} ({r['device']}) {arm}: {r['collector_ms']:.2f} vs "
                f"{r['none_ms']:.2f} ms/step = {r['ratio']:.3f}x "
                f"(median {r['median_ratio']:.3f}x); stats every {r['stats_every']}; "
                f"budget {json.dumps({k: round(v, 3) for k, v in r['budget'].items() if v})}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
