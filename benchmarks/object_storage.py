"""A store on S3 against the same store on disk, side by side.

Starts moto's S3 server on 127.0.0.1 (never a real endpoint), trains ``--runs`` small
runs of ``--steps`` steps into a bucket and into a directory, then times each verb in
a fresh process on the bucket and on a downloaded copy of its objects (the median of
``--rounds``, alternating), and checks that the answers are the same. On a local
endpoint this measures the cost of the requests (listing, footers, GETs), not of a
network.

    .venv/bin/python benchmarks/object_storage.py --runs 10 --steps 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import torch

from collector import Collector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed
from tests import s3server  # noqa: E402
from tests.s3server import download  # noqa: E402


def train(root: str, name: str, steps: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Collector(root, name=name, model=model, optimizer=opt) as tel:
        for step in range(steps):
            x = torch.randn(32, 8)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
            if step % 20 == 19:
                tel.log({"loss": loss.item()}, split="val", epoch=step // 20)


VERBS = {
    "runs": ["runs", "{root}", "--format", "json"],
    "analyze (no cache)": ["analyze", "{root}", "--format", "json", "--no-cache", "-q"],
    "analyze (cached)": ["analyze", "{root}", "--format", "json", "-q"],
    "query": ["query", "{root}", "SELECT count(*) AS n FROM tensors", "--format", "json"],
}


def run_verb(args: list[str], root: str) -> tuple[float, Any]:
    telemetry = str(Path(sys.executable).with_name("telemetry"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [telemetry, *(a.format(root=root) for a in args)], capture_output=True, check=False
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr.decode())
    return time.perf_counter() - t0, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    server, _ = s3server.start()
    try:
        from store.location import filesystem

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        filesystem("s3").mkdir(bucket)
        remote = f"s3://{bucket}/runs"
        scratch = Path(tempfile.mkdtemp(prefix="telemetry-s3-bench-"))
        result: dict[str, Any] = {"runs": args.runs, "steps": args.steps, "verbs": {}}
        for where, root in (("s3", remote), ("local", str(scratch / "written"))):
            t0 = time.perf_counter()
            for i in range(args.runs):
                train(root, f"r{i}", args.steps)
            result[f"train_{where}_s"] = time.perf_counter() - t0
        local = str(download(remote, scratch / "copy"))  # the same objects, on disk
        print(
            f"training {args.runs} runs x {args.steps} steps: S3 {result['train_s3_s']:.1f} s, "
            f"local {result['train_local_s']:.1f} s "
            f"({result['train_s3_s'] / result['train_local_s']:.1f}x)"
        )
        for verb, verb_args in VERBS.items():
            times: dict[str, list[float]] = {"s3": [], "local": []}
            answers: dict[str, Any] = {}
            for _ in range(args.rounds):
                for where, root in (("s3", remote), ("local", local)):
                    seconds, answers[where] = run_verb(verb_args, root)
                    times[where].append(seconds)
            same = answers["s3"] == answers["local"]
            s3, disk = median(times["s3"]), median(times["local"])
            result["verbs"][verb] = {"s3_s": s3, "local_s": disk, "same_answer": same}
            print(f"{verb:>20}: S3 {s3:.2f} s, local {disk:.2f} s ({s3 / disk:.1f}x), same: {same}")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
