"""Export benchmarks: every format on a tiny model, failures recorded, meaningful parity."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from analysis import open_store
from collector import Collector, ConfigError
from exports.benchmark import ExportBenchmark, benchmark
from exports.formats import default_formats, parse_pruned
from exports.measure import parity, tile, time_calls
from store.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, STREAM_KEY, ExportStatus

FAST = {"batch_sizes": (1, 4), "warmup": 1, "repeats": 3}


class TinyCNN(nn.Module):
    """Conv + Linear: every format (pruning, int8) has something to work on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class VarArgs(nn.Module):
    """TorchScript cannot compile ``*inputs``; tracing and torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fc(inputs[0])


class SignBranch(nn.Module):
    """Data-dependent control flow: a trace freezes the branch of its example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return self.fc(x)
        return -self.fc(x)


def _digits_like(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportBenchmark]:
    """Every format (and fp16, which a CPU cannot run) on the tiny CNN, measured once."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("store")
    x, y = _digits_like()
    formats = [*default_formats(torch.device("cpu")), "pruned_l1_0.5", "fp16"]
    result = benchmark(
        TinyCNN(), x[:8], root=root, formats=formats, eval_data=(x, y), threads=1, **FAST
    )
    return root, result


def _rows(result: ExportBenchmark, fmt: str) -> list:  # type: ignore[type-arg]
    return [r for r in result.results if r.format == fmt]


def test_every_cpu_format_is_measured_at_every_batch_size(
    everything: tuple[Path, ExportBenchmark],
) -> None:
    _, result = everything
    cpu = [*default_formats(torch.device("cpu")), "pruned_l1_0.5"]
    assert cpu[0] == "eager" and {"torch_export", "onnxruntime", "dynamic_int8", "bf16"} <= set(cpu)
    for fmt in cpu:
        rows = _rows(result, fmt)
        assert [r.batch_size for r in rows] == [1, 4], fmt
        for r in rows:
            assert r.status == ExportStatus.OK, (fmt, r.error)
            assert r.latency_p50_ms is not None and r.latency_p90_ms is not None
            assert 0 < r.latency_p50_ms <= r.latency_p90_ms
            assert r.throughput is not None and r.throughput > 0
            assert r.size_bytes is not None and r.size_bytes > 0
            assert r.load_time_ms is not None and r.load_time_ms >= 0
            assert r.metric_name == "accuracy" and r.metric_value is not None
            assert 0 <= r.metric_value <= 1
            assert r.device == "cpu" and r.threads == 1


def test_exact_formats_reproduce_eager_and_lossy_ones_do_not(
    everything: tuple[Path, ExportBenchmark],
) -> None:
    _, result = everything
    for fmt in ("eager", "torchscript_trace", "torchscript_script", "torch_export"):
        assert _rows(result, fmt)[0].max_abs_diff == 0.0, fmt
    onnx = _rows(result, "onnxruntime")[0]
    assert onnx.max_rel_diff is not None and onnx.max_rel_diff < 1e-5
    eager_accuracy = _rows(result, "eager")[0].metric_value
    assert _rows(result, "torchscript_trace")[0].metric_value == eager_accuracy
    for fmt in ("dynamic_int8", "bf16", "pruned_l1_0.5"):
        r = _rows(result, fmt)[0]
        assert r.max_abs_diff is not None and 0 < r.max_abs_diff < math.inf, fmt
        assert r.max_rel_diff == pytest.approx(r.max_abs_diff / _eager_scale(), rel=1e-6)


def _eager_scale() -> float:
    torch.manual_seed(0)
    x, _ = _digits_like()
    with torch.no_grad():
        return float(TinyCNN().eval()(x).abs().max())  # the parity batch: eval data's rows


def test_int8_is_smaller_and_pruning_zeroes_the_asked_share(
    everything: tuple[Path, ExportBenchmark],
) -> None:
    _, result = everything
    eager = _rows(result, "eager")[0]
    assert eager.sparsity == 0.0
    assert _rows(result, "bf16")[0].size_bytes < eager.size_bytes  # type: ignore[operator]
    pruned = _rows(result, "pruned_l1_0.5")[0]
    # 50% of every conv/linear weight; the biases (7 of 235 parameters) are kept.
    assert pruned.sparsity == pytest.approx(0.5 * 228 / 235, abs=0.01)
    assert pruned.size_bytes == pytest.approx(eager.size_bytes, rel=0.05)  # dense storage


def test_fp16_on_a_cpu_is_a_failed_row_that_says_why(
    everything: tuple[Path, ExportBenchmark],
) -> None:
    _, result = everything
    (row,) = _rows(result, "fp16")
    assert row.status == ExportStatus.FAILED and row.batch_size is None
    assert row.error is not None and "fp16 is measured on CUDA only" in row.error
    assert "bf16" in row.error


def test_rows_land_in_a_new_run_named_after_the_model(
    everything: tuple[Path, ExportBenchmark],
) -> None:
    root, result = everything
    store = open_store(root)
    runs = store.sql("SELECT run_id, name, status FROM runs")
    assert runs.rows() == [(result.run_id, "TinyCNN", "finished")]
    stored = store.sql("SELECT * FROM exports ORDER BY seq")
    assert stored.height == len(result.results)
    assert stored["format"].to_list() == [r.format for r in result.results]
    env = json.loads(stored["env"][0])
    assert env["torch"] == torch.__version__ and env["threads"] == 1
    assert env["onnxruntime"] and env["device"] == "cpu"
    assert env["inputs"] == [{"shape": [8, 1, 4, 4], "dtype": "torch.float32"}]


def test_a_model_that_cannot_be_scripted_fails_alone(tmp_path: Path) -> None:
    formats = ["torchscript_script", "torchscript_trace", "dynamic_int8"]
    result = benchmark(VarArgs(), torch.randn(4, 6), root=tmp_path, formats=formats, **FAST)
    script = _rows(result, "torchscript_script")
    assert [r.status for r in script] == [ExportStatus.FAILED]
    assert script[0].error is not None and "variable number of arguments" in script[0].error
    ok = {r.format for r in result.ok()}
    assert ok == {"eager", "torchscript_trace", "dynamic_int8"}
    stored = open_store(tmp_path).sql("SELECT format, status, error FROM exports")
    failed = stored.filter(stored["status"] == "failed")
    assert failed["format"].to_list() == ["torchscript_script"]


def test_tracing_a_data_dependent_branch_shows_in_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    positive = torch.rand(4, 6) + 0.1  # the trace takes the `sum > 0` branch
    negative = -positive  # the parity batch takes the other one
    result = benchmark(
        SignBranch(),
        positive,
        root=tmp_path,
        formats=["torchscript_trace", "torchscript_script"],
        eval_data=(negative, torch.zeros(4, dtype=torch.long)),
        **FAST,
    )
    traced = _rows(result, "torchscript_trace")[0]
    scripted = _rows(result, "torchscript_script")[0]
    assert scripted.max_abs_diff == 0.0
    assert traced.max_rel_diff == pytest.approx(2.0)  # the sign flipped: |-y - y| = 2|y|


def test_missing_onnxruntime_is_recorded_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    result = benchmark(
        TinyCNN(), torch.rand(2, 1, 4, 4), root=tmp_path, formats=["onnxruntime"], **FAST
    )
    (row,) = _rows(result, "onnxruntime")
    assert row.status == ExportStatus.FAILED
    assert row.error is not None and "pip install onnx onnxruntime" in row.error
    assert {r.format for r in result.ok()} == {"eager"}


def test_rows_go_to_the_given_run_at_its_step_and_its_hooks_stay_out(tmp_path: Path) -> None:
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _digits_like()
    with Collector(tmp_path, name="trained", model=model, optimizer=opt) as tel:
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        hooks = len(model._forward_hooks) + len(model._forward_pre_hooks)
        result = benchmark(model, x[:4], run=tel, formats=["torchscript_script"], **FAST)
        assert result.run_id == tel.run_id
        # The collector's Python hooks are not compiled into (or timed with) the copies...
        assert {r.format for r in result.ok()} == {"eager", "torchscript_script"}
        # ...and stay on the model, which keeps training afterwards.
        assert len(model._forward_hooks) + len(model._forward_pre_hooks) == hooks
        assert model.training
    store = open_store(tmp_path)
    assert store.sql("SELECT DISTINCT run_id, step FROM exports").rows() == [(tel.run_id, 2)]
    assert store.sql("SELECT count(*) FROM runs").item() == 1


def test_eval_data_as_batches_gives_the_same_metric_as_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = _digits_like(20)
    batches = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 20, 6)]
    common = {"root": tmp_path, "formats": ["eager"], **FAST}
    whole = benchmark(model, x[:4], eval_data=(x, y), **common).results[0]  # type: ignore[arg-type]
    split = benchmark(model, x[:4], eval_data=batches, **common).results[0]  # type: ignore[arg-type]
    with torch.no_grad():
        expected = float((model(x).argmax(1) == y).float().mean())
    assert whole.metric_value == pytest.approx(expected)
    assert split.metric_value == pytest.approx(expected)


def test_a_custom_metric_is_named_after_the_function(tmp_path: Path) -> None:
    def neg_mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return -float(((outputs[:, 0] - targets.float()) ** 2).mean())

    x, y = _digits_like(8)
    result = benchmark(
        TinyCNN(), x[:2], root=tmp_path, formats=["eager"], eval_data=(x, y), metric=neg_mse, **FAST
    )
    assert result.results[0].metric_name == "neg_mse"
    assert result.results[0].metric_value is not None and result.results[0].metric_value <= 0


def test_threads_are_set_for_the_measurement_and_restored(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    benchmark(
        TinyCNN(), torch.rand(2, 1, 4, 4), root=tmp_path, formats=["eager"], threads=1, **FAST
    )
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"formats": ["tensorrt"]}, "unknown export format"),
        ({"formats": ["pruned_l1_1.5"]}, "unknown export format"),
        ({"root": None}, "pass run="),
        ({"metric": "accuracy"}, "needs eval_data"),
        ({"repeats": 1}, "repeats must be"),
        ({"batch_sizes": (0,)}, "batch_sizes"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_arguments_are_rejected_before_anything_runs(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"root": tmp_path, **kwargs}
    with pytest.raises(ConfigError, match=match):
        benchmark(TinyCNN(), torch.rand(2, 1, 4, 4), **args)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir()), "no run is created for a rejected call"


def test_example_inputs_must_be_batched_tensors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch dimension"):
        benchmark(TinyCNN(), torch.tensor(1.0), root=tmp_path)
    with pytest.raises(ConfigError, match="share their batch size"):
        benchmark(VarArgs(), (torch.rand(2, 6), torch.rand(3, 6)), root=tmp_path)


# -- the measurement pieces ----------------------------------------------------------------


def test_parity_is_relative_to_the_largest_eager_output() -> None:
    ref = [torch.tensor([[1.0, -4.0]]), torch.tensor([0.5])]
    got = [torch.tensor([[1.2, -4.0]]), torch.tensor([0.5])]
    abs_diff, rel_diff = parity(got, ref)
    assert abs_diff == pytest.approx(0.2) and rel_diff == pytest.approx(0.05)
    assert parity(ref, ref) == (0.0, 0.0)


def test_parity_reports_nan_and_refuses_other_shapes() -> None:
    ref = [torch.tensor([1.0, 2.0])]
    abs_diff, rel_diff = parity([torch.tensor([1.0, math.nan])], ref)
    assert math.isnan(abs_diff) and math.isnan(rel_diff)
    with pytest.raises(ValueError, match=r"shape \(3,\), eager's has \(2,\)"):
        parity([torch.zeros(3)], ref)
    with pytest.raises(ValueError, match="eager has 1"):
        parity([], ref)
    assert parity([torch.ones(2)], [torch.zeros(2)]) == (1.0, math.inf)


def test_tile_cycles_the_examples_to_any_batch_size() -> None:
    (x,) = tile((torch.tensor([[1.0], [2.0]]),), 5)
    assert x.flatten().tolist() == [1.0, 2.0, 1.0, 2.0, 1.0]


def test_latency_percentiles_come_from_the_timed_calls_only() -> None:
    calls = []
    latency = time_calls(
        lambda x: calls.append(x.shape[0]),
        (torch.zeros(3, 2),),
        warmup=2,
        repeats=5,
        device=torch.device("cpu"),
    )
    assert calls == [3] * 7
    assert 0 <= latency.p50_ms <= latency.p90_ms
    assert latency.throughput > 0


def test_pruned_format_names_carry_their_amount() -> None:
    assert parse_pruned("pruned_l1_0.3") == 0.3
    assert parse_pruned("pruned_l1_.5") == 0.5
    assert parse_pruned("pruned_l1_1.0") is None
    assert parse_pruned("pruned_l2_0.3") is None


def test_an_exports_segment_from_before_the_new_columns_still_reads(tmp_path: Path) -> None:
    old = pa.schema(
        [
            ("run_id", pa.string()),
            ("rank", pa.int32()),
            ("attempt", pa.int32()),
            ("seq", pa.int64()),
            ("step", pa.int64()),
            ("epoch", pa.int64()),
            ("wall_time", pa.timestamp("us", tz="UTC")),
            ("format", pa.string()),
            ("batch_size", pa.int64()),
            ("latency_p50_ms", pa.float64()),
            ("status", pa.string()),
        ],
        metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(), STREAM_KEY: b"exports"},
    )
    table = pa.table(
        [["r"], [0], [0], [0], [3], [None], [0], ["eager"], [1], [0.5], ["ok"]], schema=old
    )
    (tmp_path / "r" / "exports").mkdir(parents=True)
    pq.write_table(table, tmp_path / "r" / "exports" / "0-0-000000.parquet")
    store = open_store(tmp_path)
    assert store.unreadable == []
    row = store.sql("SELECT format, latency_p50_ms, load_time_ms, env FROM exports").row(0)
    assert row == ("eager", 0.5, None, None)
