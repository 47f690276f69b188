"""Export formats: each one turns the model into something saved on disk, loaded back, runnable.

A format is a function ``(model, inputs, ctx) -> Loaded``. It exports or converts
the model, writes it into its own folder under ``ctx.workdir``, loads it back from
there (timing only the load), and returns a callable that takes the same
positional inputs as the model. The on-disk size is every byte the format wrote.
A format raises when it cannot do its job; ``exports.benchmark`` records that as a
failed format and moves on to the next one.

Loading weights always goes through ``torch.load(weights_only=True)``: a benchmark
never unpickles arbitrary objects.

Formats (``FORMATS`` lists the fixed names; ``pruned_l1_<amount>`` takes an amount
in (0, 1)):

    eager               the model itself: state_dict saved and loaded into a copy
    torchscript_trace   torch.jit.trace, saved and loaded
    torchscript_script  torch.jit.script, saved and loaded
    torch_export        torch.export with a dynamic batch dimension (.pt2), saved and loaded
    onnxruntime         torch.onnx.export (dynamo), onnx.checker, ONNX Runtime CPU provider
    dynamic_int8        quantize_dynamic on Linear, LSTM and GRU layers (CPU kernels)
    pruned_l1_<amount>  l1_unstructured on every Conv/Linear weight, made permanent
    fp16, bf16          the model cast to half precision (fp16 on CUDA only)
"""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from store.errors import TelemetryError

FORMATS = (
    "eager",
    "torchscript_trace",
    "torchscript_script",
    "torch_export",
    "onnxruntime",
    "dynamic_int8",
    "fp16",
    "bf16",
)
"""The fixed format names; ``pruned_l1_<amount>`` comes on top."""

PRUNED_RE = re.compile(r"pruned_l1_(0?\.\d+)\Z")

LOSSY = ("dynamic_int8", "fp16", "bf16")
"""Formats that change the outputs by design (so does every ``pruned_l1_*``)."""

_QUANTIZABLE = (nn.Linear, nn.LSTM, nn.GRU)
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FormatUnavailable(TelemetryError, RuntimeError):
    """The format cannot run here (missing package, unsupported device); says what to do."""


@dataclass(frozen=True)
class Context:
    """What every format needs besides the model and its inputs."""

    workdir: Path
    device: torch.device
    threads: int


@dataclass(frozen=True)
class Loaded:
    """A format loaded back from disk, ready to time."""

    run: Callable[..., Any]
    """Takes the model's positional inputs (on ``device``); returns its outputs."""
    size_bytes: int
    load_time_ms: float
    device: torch.device
    sparsity: float | None = None
    threads: int | None = None
    """The intra-op threads of a runtime of its own (ONNX Runtime), read back from it;
    None for torch formats, which run with torch's (pinned by the benchmark)."""


Format = Callable[[nn.Module, tuple[torch.Tensor, ...], Context], Loaded]


def parse_pruned(name: str) -> float | None:
    """The amount of ``pruned_l1_<amount>``, or None when ``name`` is not such a format."""
    m = PRUNED_RE.match(name)
    if m is None:
        return None
    amount = float(m.group(1))
    return amount if 0.0 < amount < 1.0 else None


def is_known(name: str) -> bool:
    return name in FORMATS or parse_pruned(name) is not None


def lookup(name: str) -> Format:
    """The function that builds format ``name`` (see ``is_known``)."""
    amount = parse_pruned(name)
    if amount is not None:
        return lambda model, inputs, ctx: _pruned(model, inputs, ctx, amount=amount, name=name)
    return _BUILDERS[name]


def default_formats(device: torch.device) -> tuple[str, ...]:
    """Every format that can run on ``device``, with 30% pruning; fp16 on CUDA only, bf16
    on the CPU and on GPUs that support it."""
    half: tuple[str, ...] = ("bf16",)
    if device.type == "cuda":
        half = ("fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp16",)
    return (*FORMATS[:6], "pruned_l1_0.3", *half)


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero elements among the model's floating-point parameters."""
    params = [p.detach() for p in model.parameters() if p.is_floating_point()]
    total = sum(p.numel() for p in params)
    if not total:
        return 0.0
    zeros = torch.stack([(p == 0).sum() for p in params]).sum()
    return float(zeros) / total


# -- formats ---------------------------------------------------------------------------------


def _eager(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    folder = _folder(ctx, "eager")
    loaded = _state_dict_round_trip(
        model, folder, ctx.device, skeleton=lambda: copy.deepcopy(model)
    )
    return dataclasses.replace(loaded, sparsity=sparsity(model))


def _trace(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    folder = _folder(ctx, "torchscript_trace")
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs)
    return _jit_round_trip(traced, folder, ctx.device)


def _script(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    folder = _folder(ctx, "torchscript_script")
    return _jit_round_trip(torch.jit.script(model), folder, ctx.device)


def _torch_export(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    folder = _folder(ctx, "torch_export")
    program = torch.export.export(model, inputs, dynamic_shapes=_dynamic_batch(inputs))
    path = folder / "model.pt2"
    torch.export.save(program, path)
    start = time.perf_counter()
    loaded = torch.export.load(path).module()
    return Loaded(loaded, _size(folder), _ms_since(start), ctx.device)


def _onnxruntime(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    try:
        # Paid only when this format runs: onnx + onnxruntime ~0.25 s, onnxscript (which
        # the dynamo exporter needs) ~1.5-2 s on the 2-core development machine.
        import onnx
        import onnxruntime as ort
        import onnxscript  # noqa: F401  # imported here to fail with a clear message
    except ImportError as e:
        raise FormatUnavailable(
            f"{e.name or 'onnx/onnxruntime'} is not installed: pip install onnx onnxruntime "
            "onnxscript (or pip install 'telemetry[export]')"
        ) from e
    folder = _folder(ctx, "onnxruntime")
    path = folder / "model.onnx"
    # The dynamo exporter (the default since torch 2.9; needs onnxscript); small models
    # are kept in one file, large ones get an external-data file, counted in the size.
    torch.onnx.export(
        model,
        inputs,
        str(path),
        dynamo=True,
        dynamic_shapes=_dynamic_batch(inputs),
        verbose=False,
        external_data=_parameter_bytes(model) > 1_500_000_000,
    )
    onnx.checker.check_model(str(path))
    options = ort.SessionOptions()
    # Pinned like torch's (ctx.threads): left at 0, ONNX Runtime takes every core while
    # eager runs on the threads it was given, and the "speed-up" is the thread count.
    options.intra_op_num_threads = ctx.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    load_ms = _ms_since(start)
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise RuntimeError(
            f"the ONNX graph takes {len(names)} inputs ({', '.join(names)}), the model was "
            f"given {len(inputs)}"
        )

    def run(*xs: torch.Tensor) -> list[torch.Tensor]:
        feed = {n: x.detach().cpu().numpy() for n, x in zip(names, xs, strict=True)}
        return [torch.from_numpy(o) for o in session.run(None, feed)]

    threads = session.get_session_options().intra_op_num_threads
    return Loaded(run, _size(folder), load_ms, torch.device("cpu"), threads=threads)


def _dynamic_int8(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
    if not any(isinstance(m, _QUANTIZABLE) for m in model.modules()):
        raise FormatUnavailable("the model has no Linear, LSTM or GRU layer to quantize")
    quantize = _quantize_dynamic()
    folder = _folder(ctx, "dynamic_int8")
    cpu = torch.device("cpu")  # dynamically quantized kernels exist for the CPU only
    quantized = quantize(copy.deepcopy(model).to(cpu))
    torch.save(quantized.state_dict(), folder / "state_dict.pt")
    return _load_state_dict(folder, cpu, skeleton=lambda: quantize(copy.deepcopy(model).to(cpu)))


def _pruned(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context, *, amount: float, name: str
) -> Loaded:
    from torch.nn.utils import prune  # not imported by `import torch`

    pruned = copy.deepcopy(model)
    layers = [m for m in pruned.modules() if isinstance(m, _PRUNABLE)]
    if not layers:
        raise FormatUnavailable("the model has no Conv or Linear layer to prune")
    for layer in layers:
        prune.l1_unstructured(layer, "weight", amount=amount)
        prune.remove(layer, "weight")  # permanent: plain weights with zeros, no mask
    loaded = _state_dict_round_trip(
        pruned, _folder(ctx, name), ctx.device, skeleton=lambda: copy.deepcopy(pruned)
    )
    return dataclasses.replace(loaded, sparsity=sparsity(pruned))


def _half(dtype: torch.dtype, name: str) -> Format:
    def build(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> Loaded:
        if dtype == torch.float16 and ctx.device.type != "cuda":
            raise FormatUnavailable(
                f"fp16 is measured on CUDA only (CPU float16 kernels are slow or missing); "
                f"the model is on {ctx.device}: use bf16 on the CPU"
            )
        cuda = ctx.device.type == "cuda"
        if dtype == torch.bfloat16 and cuda and not torch.cuda.is_bf16_supported():
            raise FormatUnavailable(f"{torch.cuda.get_device_name(ctx.device)} lacks bf16")
        half = copy.deepcopy(model).to(dtype)
        loaded = _state_dict_round_trip(
            half, _folder(ctx, name), ctx.device, skeleton=lambda: copy.deepcopy(half)
        )
        module = loaded.run

        def run(*xs: torch.Tensor) -> Any:
            # The same float32 inputs as every format; the cast is part of the latency.
            return module(*(x.to(dtype) if x.is_floating_point() else x for x in xs))

        return dataclasses.replace(loaded, run=run)

    return build


_BUILDERS: dict[str, Format] = {
    "eager": _eager,
    "torchscript_trace": _trace,
    "torchscript_script": _script,
    "torch_export": _torch_export,
    "onnxruntime": _onnxruntime,
    "dynamic_int8": _dynamic_int8,
    "fp16": _half(torch.float16, "fp16"),
    "bf16": _half(torch.bfloat16, "bf16"),
}


# -- saving and loading ----------------------------------------------------------------------


def _state_dict_round_trip(
    model: nn.Module, folder: Path, device: torch.device, *, skeleton: Callable[[], nn.Module]
) -> Loaded:
    torch.save(model.state_dict(), folder / "state_dict.pt")
    return _load_state_dict(folder, device, skeleton=skeleton)


def _load_state_dict(
    folder: Path, device: torch.device, *, skeleton: Callable[[], nn.Module]
) -> Loaded:
    """Load ``folder/state_dict.pt`` into a fresh ``skeleton()``; the load time includes both."""
    start = time.perf_counter()
    state = torch.load(folder / "state_dict.pt", map_location=device, weights_only=True)
    module = skeleton()
    module.load_state_dict(state)
    module.eval()
    return Loaded(module, _size(folder), _ms_since(start), device)


def _jit_round_trip(scripted: torch.jit.ScriptModule, folder: Path, device: torch.device) -> Loaded:
    path = folder / "model.pt"
    scripted.save(str(path))
    start = time.perf_counter()
    loaded = torch.jit.load(str(path), map_location=device)
    loaded.eval()
    return Loaded(loaded, _size(folder), _ms_since(start), device)


def _quantize_dynamic() -> Callable[[nn.Module], nn.Module]:
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:  # deprecated in favour of torchao; gone in some future torch
        raise FormatUnavailable(
            f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic"
        ) from e
    return lambda m: quantize_dynamic(m, set(_QUANTIZABLE), dtype=torch.qint8)


def _dynamic_batch(inputs: Sequence[torch.Tensor]) -> tuple[dict[int, Any], ...]:
    return tuple({0: torch.export.Dim.DYNAMIC} for _ in inputs)


def _parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _folder(ctx: Context, name: str) -> Path:
    folder = ctx.workdir / name
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
