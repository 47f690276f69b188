"""Where the collector's time per step goes: the pieces README Performance quotes.

Measured in one process, torch 1 thread (CPU):

* ``hooks``: the demo CNN trained as two interleaved copies (as
  ``benchmarks/interleaved.py``), the other copy carrying only what a collector's
  unsampled step needs from torch: no hooks, the same hooks with empty bodies (the
  root's forward pre-hook, two post-accumulate-grad hooks queueing an engine callback,
  the optimizer's pre- and post-step hooks), and those plus the global gradient norm
  in the pre-step hook. The difference is torch's dispatch, then the norm's cost on
  gradients just out of backward.
* ``stats``: the statistics of the CNN's gradients, weights and updates (24 tensors)
  as ``collector.stats`` reduces them on the CPU now (zeros counted by NumPy) against
  torch's ``count_nonzero`` (before).
* ``zeros``: counting the zeros of a ReLU output (half zeros) with torch's
  ``count_nonzero`` and with NumPy's ``count_nonzero(a != 0)``.
* ``resnet18``: one sampled step's statistics of torchvision's resnet18 (11.2M
  parameters), phase by phase: gradients, the weight copy, the update subtraction,
  weights, updates (minimum of 6 steps after 2 of warm-up).

    .venv/bin/python benchmarks/hot_path.py --out benchmarks/results/hot_path.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from overhead import _workload, train_step  # noqa: E402


def _per_call_us(f: Callable[[], object], n: int) -> float:
    f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n * 1e6


def hooks(steps: int) -> dict[str, float]:
    """Extra microseconds per step of each hook set, against the bare copy."""
    import torch
    from torch.autograd import Variable

    def empty(model: Any, opt: Any) -> None:
        model.register_forward_pre_hook(lambda *a, **k: None, with_kwargs=True)
        opt.register_step_pre_hook(lambda *a, **k: None)
        opt.register_step_post_hook(lambda *a, **k: None)
        params = list(model.parameters())
        queued = [False]

        def end() -> None:
            queued[0] = False

        def accumulated(p: Any) -> None:
            if not queued[0]:
                queued[0] = True
                Variable._execution_engine.queue_callback(end)

        params[0].register_post_accumulate_grad_hook(accumulated)
        params[-1].register_post_accumulate_grad_hook(accumulated)

    def with_norm(model: Any, opt: Any) -> None:
        empty(model, opt)
        params = list(model.parameters())

        def norm(*a: Any, **k: Any) -> None:
            grads = [p.grad for p in params]
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

        opt.register_step_pre_hook(norm)

    out = {}
    for name, setup in (("none", None), ("empty hooks", empty), ("hooks + grad norm", with_norm)):
        bare, batch_at, loss_fn = _workload("cnn", torch.device("cpu"))
        watched = copy.deepcopy(bare)
        opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (bare, watched)]
        if setup is not None:
            setup(watched, opts[1])
        times: list[list[float]] = [[], []]
        for i in range(steps):
            for k in (0, 1) if i % 2 else (1, 0):
                t0 = time.perf_counter()
                train_step((bare, watched)[k], opts[k], batch_at, loss_fn, i)
                times[k].append(time.perf_counter() - t0)
        a, b = (statistics.fmean(t[25:]) * 1e6 for t in times)
        out[name] = b - a
        print(f"hooks: {name}: {b - a:+.0f} us a step ({b / a:.3f}x of {a / 1e3:.2f} ms)")
    return out


def stats() -> dict[str, float]:
    """Microseconds for the CNN's three statistics groups, now and before (warm)."""
    import torch

    from collector import stats as module

    model, batch_at, loss_fn = _workload("cnn", torch.device("cpu"))
    x, y = batch_at(0)
    loss_fn(model(x), y).backward()
    weights = [p.detach() for p in model.parameters()]
    grads = [p.grad for p in model.parameters() if p.grad is not None]

    def now() -> object:
        groups = [module.reduce(grads), module.reduce(weights), module.reduce(weights)]
        return module.to_host(groups)

    def torch_counts(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.count_nonzero(x) for x in xs]).double().unsqueeze(1)

    def before() -> object:
        counts = module._nonzero_counts
        module._nonzero_counts = torch_counts  # type: ignore[assignment]
        try:
            return now()
        finally:
            module._nonzero_counts = counts  # type: ignore[assignment]

    out = {"now_us": _per_call_us(now, 500), "per_tensor_us": _per_call_us(before, 500)}
    print(
        f"stats: {len(grads) + 2 * len(weights)} tensors of the CNN: "
        f"{out['per_tensor_us']:.0f} us with torch's count_nonzero, "
        f"{out['now_us']:.0f} us as collector.stats reduces them now"
    )
    return out


def zeros() -> dict[str, float]:
    import numpy as np
    import torch

    out = {}
    for n in (1 << 16, 1 << 20):
        t = torch.relu(torch.randn(n, generator=torch.Generator().manual_seed(0)))
        a = t.numpy()
        reps = max(5, (1 << 24) // n)
        out[f"torch_{n}_us"] = _per_call_us(lambda t=t: torch.count_nonzero(t), reps)
        out[f"numpy_{n}_us"] = _per_call_us(lambda a=a: np.count_nonzero(a != 0), reps)
        print(
            f"zeros of a ReLU output, {n:,} floats: torch.count_nonzero "
            f"{out[f'torch_{n}_us']:.0f} us, numpy count_nonzero(a != 0) "
            f"{out[f'numpy_{n}_us']:.0f} us"
        )
    return out


def resnet18() -> dict[str, float]:
    """Milliseconds of each phase of one sampled step's statistics (minimum of 6)."""
    import torch

    from collector import stats as module

    model, batch_at, loss_fn = _workload("resnet18", torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    params = list(model.parameters())
    copies = [torch.empty_like(p) for p in params]
    phases: dict[str, list[float]] = {}

    def timed(name: str, f: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = f()
        phases.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
        return result

    for i in range(8):
        x, y = batch_at(i)
        opt.zero_grad()
        timed("forward and backward", lambda x=x, y=y: loss_fn(model(x), y).backward())
        grads = timed("gradients", lambda: module.reduce([p.grad for p in params]))
        timed("weight copy", lambda: torch._foreach_copy_(copies, [p.detach() for p in params]))
        timed("optimizer step", opt.step)
        with torch.no_grad():
            current = [p.detach() for p in params]
            timed("update subtraction", lambda c=current: torch._foreach_sub_(copies, c))
            weights = timed("weights", lambda c=current: module.reduce(c))
            updates = timed("updates", lambda: module.reduce(copies, negate=True))
            timed("to host", lambda g=grads, w=weights, u=updates: module.to_host([g, w, u]))
    out = {name: min(values[2:]) for name, values in phases.items()}
    print(
        f"resnet18 ({sum(p.numel() for p in params):,} parameters), one sampled step, ms: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in out.items())
    )
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000, help="steps per copy for 'hooks'")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/hot_path.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {
        "hooks_us_per_step": hooks(args.steps),
        "stats_us": stats(),
        "zeros_us": zeros(),
        "resnet18_ms": resnet18(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
