"""Collector overhead against no logging and against TensorBoard, on two workloads.

Workloads (SGD with momentum 0.9 and a cosine LR schedule, fixed seeds, torch 1
thread on CPU; CUDA is used when available):

* ``cnn``: the demo's small CNN on digits, batch 64 (~4 ms/step on a 2-core CPU);
* ``resnet18``: torchvision resnet18 (weights=None, 10 classes), 3x32x32, batch 16.

Arms: ``none`` (no logging), ``default`` (``Collector`` with its defaults), ``guarded``
(the defaults with ``on_nonfinite="stop"``, early stopping armed on ``loss/val`` logged
every 100 steps, and ``should_stop`` read every step: the loop pattern of README "While
it trains"), ``full``
(grad/weight/update statistics every step, activations every 10 steps) and
``tensorboard`` (``SummaryWriter.add_histogram`` of every weight and gradient every
step, plus the loss), each in a fresh process, alternating order per round
(A B C D, D C B A, ...) so that drift of the machine hits every arm alike.

Per arm: mean and median ms/step after warm-up, their ratios to ``none``, peak RSS,
bytes on disk, numbers stored and bytes per stored number. Prints a table and writes
JSON (``--out``) plus a markdown summary next to it.

    .venv/bin/python benchmarks/overhead.py --rounds 2 --out benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from collector.budget import DENSE_STEPS  # torch-free

ARMS = ("none", "default", "guarded", "full", "tensorboard")
WORKLOADS = {
    # name: (batch size, default steps, default warm-up)
    "cnn": (64, 1000, 50),
    "resnet18": (16, 100, 10),
}
FULL = {"stats_every": 1, "activations_every": 10}


def _workload(name: str, device: Any) -> tuple[Any, Any, Any]:
    """(model, a function returning batch i, loss function) with fixed seeds."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    batch = WORKLOADS[name][0]
    if name == "cnn":
        from telemetry.demo import SmallCNN, load_digits_tensors

        model = SmallCNN(0.25)
        x, y, _, _ = load_digits_tensors()
    else:
        import torchvision

        model = torchvision.models.resnet18(weights=None, num_classes=10)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(512, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (512,), generator=gen)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(1)
    order = [torch.randint(0, len(x), (batch,), generator=gen) for _ in range(64)]

    def batch_at(i: int) -> tuple[Any, Any]:
        idx = order[i % len(order)].to(device)
        return x[idx], y[idx]

    return model.to(device), batch_at, nn.CrossEntropyLoss()


def train_step(model: Any, opt: Any, batch_at: Any, loss_fn: Any, i: int) -> Any:
    """One optimizer step of a workload on its batch ``i``; the loss (a tensor)."""
    x, y = batch_at(i)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _tb_numbers(logdir: Path) -> int:
    """Numbers in TensorBoard's event files: scalars, and per histogram its five
    summary values plus bucket limits and counts."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    n = 0
    for path in logdir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("histo"):
                    h = value.histo
                    n += 5 + len(h.bucket_limit) + len(h.bucket)
                elif value.HasField("tensor"):
                    # Histograms come back as [k, 3] tensors (left edge, right edge,
                    # count per bucket); scalars as 0-d tensors.
                    n += max(int(tensor_util.make_ndarray(value.tensor).size), 1)
                else:
                    n += 1
    return n


def _store_numbers(root: Path) -> int:
    """Numbers in every Parquet segment of the store: numeric cells (not null), the
    elements of numeric lists (a feature map's shape, per-map lo/hi) and the bytes of
    ``samples.data`` (uint8 pixels: one number each)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def numeric(t: pa.DataType) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t)

    n = 0
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        for field, column in zip(table.schema, table.columns, strict=True):
            t = field.type
            if numeric(t):
                n += len(column) - column.null_count
            elif pa.types.is_list(t) and numeric(t.value_type):
                n += len(pc.list_flatten(column))
            elif field.name == "data" and pa.types.is_binary(t):
                n += int(pc.sum(pc.binary_length(column)).as_py() or 0)
    return n


def _child(workload: str, arm: str, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(1)
    model, batch_at, loss_fn = _workload(workload, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=warmup + steps)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tel: Any = None
        writer: Any = None
        if arm in ("default", "full", "guarded"):
            from collector import Collector

            options: dict[str, Any] = dict(FULL) if arm == "full" else {}
            if arm == "guarded":
                options["on_nonfinite"] = "stop"
            tel = Collector(root, name=workload, model=model, optimizer=opt, **options)
            if arm == "guarded":
                tel.early_stopping("loss/val", patience=10**6)
        elif arm == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(root))
        named = list(model.named_parameters())
        for i in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = train_step(model, opt, batch_at, loss_fn, i)
            sched.step()
            if tel is not None:
                tel.log({"loss": loss}, split="train")
                if arm == "guarded":
                    if i % 100 == 99:
                        tel.log({"loss/val": loss}, epoch=i // 100)
                    if tel.should_stop:
                        raise RuntimeError("a healthy run asked to stop")
            elif writer is not None:
                writer.add_scalar("loss/train", loss, i)
                for name, p in named:
                    writer.add_histogram(f"weight/{name}", p, i)
                    if p.grad is not None:
                        writer.add_histogram(f"grad/{name}", p.grad, i)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        if tel is not None:
            tel.close()
        if writer is not None:
            writer.close()
        files = [p for p in root.rglob("*") if p.is_file()]
        disk = sum(p.stat().st_size for p in files)
        numbers = (
            _tb_numbers(root)
            if arm == "tensorboard"
            else _store_numbers(root)
            if tel is not None
            else 0
        )
    return {
        "times": times,
        "bytes_on_disk": disk,
        "numbers": numbers,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(device),
        "torch": torch.__version__,
    }


def _run_child(workload: str, arm: str, steps: int, warmup: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", f"{workload}:{arm}"]
    cmd += ["--steps", str(steps), "--warmup", str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{workload}/{arm} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(workload: str, rounds: int, steps: int, warmup: int, arms: list[str]) -> dict:
    per_arm: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for r in range(rounds):
        for arm in arms if r % 2 == 0 else list(reversed(arms)):
            per_arm[arm].append(_run_child(workload, arm, steps, warmup))
    out: dict[str, Any] = {"workload": workload, "steps": steps, "rounds": rounds, "arms": {}}
    base_mean = base_median = base_steady = None
    # The collector records its first DENSE_STEPS steps densely whatever the budget: in
    # a short benchmark they weigh far more than in a training run. The steady mean
    # leaves the timed steps among them out, in every arm alike.
    dense_timed = max(DENSE_STEPS - warmup, 0)
    for arm in arms:
        times = [t for r in per_arm[arm] for t in r["times"]]
        steady = [t for r in per_arm[arm] for t in r["times"][dense_timed:]]
        mean, median = statistics.fmean(times) * 1e3, statistics.median(times) * 1e3
        steady_mean = statistics.fmean(steady) * 1e3
        if arm == "none":
            base_mean, base_median, base_steady = mean, median, steady_mean
        last = per_arm[arm][-1]
        numbers = last["numbers"]
        out["arms"][arm] = {
            "mean_ms": mean,
            "median_ms": median,
            "ratio_mean": mean / base_mean if base_mean else None,
            "ratio_median": median / base_median if base_median else None,
            "steady_mean_ms": steady_mean,
            "ratio_steady": steady_mean / base_steady if base_steady else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in per_arm[arm]),
            "bytes_on_disk": last["bytes_on_disk"],
            "numbers": numbers,
            "bytes_per_number": last["bytes_on_disk"] / numbers if numbers else None,
        }
        out["device"] = last["device"]
        out["torch"] = last["torch"]
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | arm | ms/step (mean) | vs none (mean) | vs none (median) "
        f"| vs none (mean after step {DENSE_STEPS}) "
        "| peak RSS MB | bytes on disk | numbers | bytes/number |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for arm, a in res["arms"].items():
            lines.append(
                f"| {res['workload']} ({res['device']}) | {arm} | {a['mean_ms']:.2f} "
                f"| {_fmt(a['ratio_mean'], '.3f')}x | {_fmt(a['ratio_median'], '.3f')}x "
                f"| {_fmt(a['ratio_steady'], '.3f')}x "
                f"| {a['peak_rss_mb']:.0f} | {a['bytes_on_disk']:,} | {a['numbers']:,} "
                f"| {_fmt(a['bytes_per_number'], '.2f')} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, help="steps per process (default: per workload)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: per workload)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        workload, arm = args.child.split(":")
        print(json.dumps(_child(workload, arm, args.steps, args.warmup)))
        return
    arms = ["none", *[a for a in args.arms if a != "none"]]
    results = []
    for workload in args.workloads:
        _, steps, warmup = WORKLOADS[workload]
        res = measure(workload, args.rounds, args.steps or steps, args.warmup or warmup, arms)
        results.append(res)
        print(markdown([res]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
