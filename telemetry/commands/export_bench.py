"""``telemetry export-bench``: benchmark a model's export formats into a store, print the table.

Two ways to name the model: ``--demo`` trains the demo CNN on the bundled digits
(nothing downloaded) and measures it with its validation accuracy, end to end;
``--model pkg.module:factory`` imports a factory (a function or a class) that
returns an ``nn.Module``, optionally loads ``--weights`` (a state_dict, read with
``torch.load(weights_only=True)``), and measures it on random inputs of
``--input-shape``. Either way the rows go to the store's ``exports`` stream, where
``telemetry analyze`` and ``telemetry report`` find them.

The table does not judge on its own: its ``parity`` column is the verdict of the
``export_verdicts`` macro that the ``export_parity`` rule reports (with the rule's
default tolerances), and its ``vs eager`` column the interval comparison of the
``export_timings`` macro that ``export_summary`` ranks by, both read back from the
stored rows. A format is called faster or slower than eager only when the two 95 %
latency intervals are apart; otherwise it is "≈ eager (intervals overlap)".

Exit codes: 0 when the benchmark ran (formats that failed are rows of the table,
not errors), 2 for bad usage (click's own: an unknown format, a factory that does
not import or does not return a module, weights that do not fit).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from store.errors import ConfigError
from telemetry import common
from telemetry.common import printable

if TYPE_CHECKING:
    from torch import nn

    from exports.benchmark import ExportBenchmark, ExportResult
    from store.location import StorePath

_COLUMNS = (
    ("format", "format"),
    ("batch", "batch_size"),
    ("p50 ms", "latency_p50_ms"),
    ("95% interval", "interval"),
    ("p90 ms", "latency_p90_ms"),
    ("samples/s", "throughput"),
    ("size", "size_bytes"),
    ("load ms", "load_time_ms"),
    ("max |diff|", "max_abs_diff"),
    ("rel diff", "max_rel_diff"),
    ("parity", "parity"),
    ("metric", "metric_value"),
    ("vs eager", "vs_eager"),
    ("status", "status"),
)

OVERLAP = "≈ eager (intervals overlap)"


@dataclass(frozen=True)
class Judged:
    """What the export rules' macros say of a benchmark's stored rows."""

    parity: dict[str, str] = field(default_factory=dict)
    """Format -> ``export_verdicts``' verdict: ok, outputs differ, metric drop..."""
    vs_eager: dict[tuple[str, int], tuple[str | None, float | None]] = field(default_factory=dict)
    """(format, batch size) -> ``export_timings``' (comparison, speed-up over eager)."""

    def speed(self, fmt: str, batch: int | None) -> str | None:
        """``2.1x faster``, ``1.4x slower``, ``baseline``, or OVERLAP; None: not timed."""
        if batch is None:
            return None
        comparison, speedup = self.vs_eager.get((fmt, batch), (None, None))
        if comparison == "overlap":
            return OVERLAP
        if comparison in ("faster", "slower") and speedup:
            factor = speedup if comparison == "faster" else 1.0 / speedup
            return f"{factor:.1f}x {comparison}"
        return comparison


@click.command("export-bench")
@click.option(
    "--demo", is_flag=True, help="Train the demo CNN on the bundled digits, then measure."
)
@click.option("--model", "factory", metavar="PKG.MODULE:FACTORY", help="Returns an nn.Module.")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A state_dict saved with torch.save (loaded with weights_only=True).",
)
@click.option("--input-shape", metavar="N,C,H,W", help="Shape of the example input (float32).")
@click.option(
    "--root",
    type=common.STORE_ROOT,
    default="runs",
    show_default=True,
    help="Store to write the run into (created if missing; a directory or an s3:// URL).",
)
@click.option("--name", default=None, help="Run name [default: the model's class name].")
@click.option(
    "--formats",
    metavar="F1,F2,...",
    help="Of eager (always measured: the baseline), torchscript_trace, torchscript_script, "
    "torch_export, onnxruntime, dynamic_int8, pruned_l1_<amount> (e.g. pruned_l1_0.5), "
    "fp16 (CUDA), bf16 [default: every format the device runs, with pruned_l1_0.3].",
)
@click.option("--batch-sizes", default="1,32", show_default=True, metavar="B1,B2,...")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(6),
    default=10,
    show_default=True,
    help="Interleaved timing rounds; each times every format once (6 at least: a 95% "
    "interval of the median).",
)
@click.option(
    "--repeats", type=click.IntRange(1), default=3, show_default=True, help="Calls per round."
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Threads of torch and ONNX Runtime for every format (pinned; torch's is restored).",
)
@click.option("--device", default="cpu", show_default=True, help="Where the model runs.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def export_bench(
    demo: bool,
    factory: str | None,
    weights: Path | None,
    input_shape: str | None,
    root: StorePath,
    name: str | None,
    formats: str | None,
    batch_sizes: str,
    warmup: int,
    rounds: int,
    repeats: int,
    threads: int,
    device: str,
    output: str,
) -> None:
    """Export a model as TorchScript, torch.export, ONNX Runtime, int8, pruned and
    half precision; measure size, load time, latency, parity with eager (and accuracy
    with --demo); store the rows with the run and print them fastest first.

    \b
    Example:
      telemetry export-bench --demo
      telemetry export-bench --model mypkg.nets:SmallCNN --weights cnn.pt \\
          --input-shape 1,1,8,8 --root runs --formats eager,onnxruntime,dynamic_int8
    """
    if demo == (factory is not None):
        raise click.UsageError("give exactly one of --demo or --model PKG.MODULE:FACTORY")
    options: dict[str, Any] = {
        "batch_sizes": _ints(batch_sizes, "--batch-sizes"),
        "warmup": warmup,
        "rounds": rounds,
        "repeats": repeats,
        "threads": threads,
    }
    if formats:
        options["formats"] = [f.strip() for f in formats.split(",") if f.strip()]
    say: Callable[[str], None] = click.echo if output == "table" else _quiet
    result: ExportBenchmark | None = None
    try:
        if demo:
            if weights is not None or input_shape is not None:
                raise click.UsageError("--weights and --input-shape go with --model, not --demo")
            # torch, the exporters and the demo data: ~2-4 s of imports, paid by this verb only.
            from telemetry.demo import train_and_benchmark

            say(f"training the demo CNN into {root}/ (digits from scikit-learn, no download)")
            result = train_and_benchmark(root, progress=say, **options)
        elif factory is not None:
            _split_spec(factory)
            if input_shape is None:
                raise click.UsageError("--model needs --input-shape, e.g. --input-shape 1,1,8,8")
            result = _benchmark_factory(
                factory, weights, _ints(input_shape, "--input-shape"), root, name, device, options
            )
    except ConfigError as e:
        raise common.cli_error(e) from e
    if result is not None:
        click.echo(render(result, output, root=root, judged=judge(root, result.run_id)))


def judge(root: StorePath, run_id: str) -> Judged:
    """The parity verdicts and eager comparisons of run ``run_id``'s latest benchmark, read
    back from the store through the macros the export rules use (``export_parity``'s
    default tolerances): the table says what ``telemetry analyze`` says."""
    # duckdb + polars, ~0.3 s: paid after the benchmark, by this verb only.
    from analysis import load_rules, open_store

    params = next(r.params for r in load_rules() if r.id == "export_parity")
    store = open_store(root)
    verdicts = store.sql(
        "SELECT format, parity FROM export_verdicts($exact_tolerance, $lossy_tolerance, "
        "$max_metric_drop) WHERE run_id = $run_id",
        {**params, "run_id": run_id},
    )
    timings = store.sql(
        "SELECT format, batch_size, vs_eager, speedup FROM export_timings() WHERE run_id = $run_id",
        {"run_id": run_id},
    )
    return Judged(
        parity=dict(verdicts.rows()),
        vs_eager={(f, int(b)): (v, x) for f, b, v, x in timings.rows()},
    )


def render(
    result: ExportBenchmark, output: str, *, root: StorePath, judged: Judged | None = None
) -> str:
    """The result as ``table`` (sorted by batch size, then p50 latency), ``json`` or ``csv``,
    with ``judged``'s parity verdict and eager comparison on each row."""
    judged = judged or Judged()
    rows = [_as_dict(r, judged) for r in sorted(result.results, key=_order)]
    if output == "json":
        payload = {"run_id": result.run_id, "env": result.env, "results": rows}
        return json.dumps(_finite(payload), indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["format"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    return format_table(result, root=root, judged=judged)


def format_table(result: ExportBenchmark, *, root: StorePath, judged: Judged) -> str:
    """The plain-text table: lowest p50 first within each batch size, failures last."""
    ordered = sorted(result.results, key=_order)
    rows = [_as_dict(r, judged) for r in ordered]
    cells = [[printable(_cell(key, row[key])) for _, key in _COLUMNS] for row in rows]
    heads = [head for head, _ in _COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    left = {0, len(heads) - 1}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i in left else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    env = result.env
    plan = env.get("timing") or {}
    metric = next((r.metric_name for r in ordered if r.metric_name), None)
    lines = [
        f"export benchmark of run {result.run_id} in {root}",
        f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime') or 'not installed'}, "
        f"{env.get('threads')} thread(s), {env.get('device')} ({env.get('hardware')})",
        "",
        line(heads),
        line(["-" * w for w in widths]),
        *(line(c) for c in cells),
        "",
        f"latency: {plan.get('rounds')} interleaved rounds of {plan.get('repeats_per_round')} "
        "calls per format; p50 = median of the round medians, with its 95% interval; "
        "vs eager: a ratio only where the two intervals are apart",
        "max |diff|, rel diff: against eager on one fixed batch (rel: / max |eager output|); "
        "parity: the verdict of telemetry analyze's export_parity"
        + (f"; metric: {metric} on the eval data" if metric else ""),
    ]
    errors = [(r.format, r.batch_size, r.error) for r in ordered if r.error]
    for fmt, batch, error in errors:
        where = f" at batch {batch}" if batch is not None else ""
        first = (error or "").strip().splitlines()[0] if error and error.strip() else ""
        lines.append(f"{fmt}{where} failed: {first[:160]}")
    lines.append(f"next: telemetry report {root} --run {result.run_id}")
    return "\n".join(lines)


# -- the --model path ----------------------------------------------------------------------------


def _benchmark_factory(
    spec: str,
    weights: Path | None,
    shape: list[int],
    root: StorePath,
    name: str | None,
    device: str,
    options: dict[str, Any],
) -> ExportBenchmark:
    import torch

    from exports.benchmark import benchmark

    model = load_model(spec, weights)
    try:
        model = model.to(device)
    except (RuntimeError, ValueError) as e:
        message = f"cannot move the model to {device!r}: {e}"
        raise click.BadParameter(message, param_hint="--device") from e
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    return benchmark(model, example, root=root, name=name or spec.rpartition(":")[2], **options)


def load_model(spec: str, weights: Path | None) -> nn.Module:
    """The module ``pkg.module:factory()`` returns, with ``weights`` loaded into it."""
    import torch
    from torch import nn

    module_name, attr = _split_spec(spec)
    if os.getcwd() not in sys.path:  # like `python -m`: modules next to the user resolve
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise click.BadParameter(f"cannot import {spec!r}: {e}", param_hint="--model") from e
    try:
        model = target if isinstance(target, nn.Module) else target()
    except Exception as e:  # the user's code: whatever it raises, say where it came from
        message = f"{spec}() raised {type(e).__name__}: {e}"
        raise click.BadParameter(message, param_hint="--model") from e
    if not isinstance(model, nn.Module):
        raise click.BadParameter(
            f"{spec} returned a {type(model).__name__}, not a torch.nn.Module", param_hint="--model"
        )
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]  # a checkpoint that wraps the weights
            model.load_state_dict(state)
        except Exception as e:  # unpickling refused, wrong keys or shapes: all say "not these"
            raise click.BadParameter(
                f"cannot load {weights} into {type(model).__name__}: {e}", param_hint="--weights"
            ) from e
    return model


def _split_spec(spec: str) -> tuple[str, str]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"expected PKG.MODULE:FACTORY, got {spec!r}", param_hint="--model")
    return module_name, attr


# -- small pieces --------------------------------------------------------------------------------


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(
            f"expected positive integers like 1,32, got {text!r}", param_hint=option
        )
    return values


def _order(r: ExportResult) -> tuple[int, float]:
    latency = r.latency_p50_ms if r.ok and r.latency_p50_ms is not None else math.inf
    return (r.batch_size if r.batch_size is not None else sys.maxsize, latency)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("status", "parity", "vs_eager", "interval"):
        return str(value)
    if key == "size_bytes":
        return _bytes(int(value))
    if isinstance(value, float):
        if key in ("max_abs_diff", "max_rel_diff"):
            return f"{value:.2g}"
        if key == "throughput":
            return f"{value:,.0f}"
        if key == "metric_value":
            return f"{value:.4f}"
        return f"{value:.3f}"
    return str(value)


def _bytes(n: int) -> str:
    if n < 1000:
        return f"{n}B"
    size = float(n)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f}{unit}"


def _as_dict(r: ExportResult, judged: Judged) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["status"] = r.status.value
    d["parity"] = judged.parity.get(r.format)
    d["vs_eager"] = judged.speed(r.format, r.batch_size)
    low, high = r.latency_ci_low_ms, r.latency_ci_high_ms
    d["interval"] = None if low is None or high is None else f"{low:.3f}-{high:.3f}"
    return d


def _finite(value: Any) -> Any:
    """Strict JSON: NaN and Inf become strings (as in ``telemetry analyze --format json``)."""
    from store.records import json_safe

    return json_safe(value)


def _quiet(_: str) -> None:
    pass
