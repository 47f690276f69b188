"""Export benchmarks: every format on a tiny model, failures recorded, meaningful parity."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
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
from exports.measure import parity, tile
from exports.timing import coverage, median_interval, round_order, summarise, time_rounds
from store.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, STREAM_KEY, ExportStatus

FAST = {"batch_sizes": (1, 4), "warmup": 1, "rounds": 6, "repeats": 1}


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
            assert r.latency_p50_ms > 0
            assert r.latency_ci_low_ms is not None and r.latency_ci_high_ms is not None
            assert r.latency_ci_low_ms <= r.latency_p50_ms <= r.latency_ci_high_ms
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
    timed = stored.filter(stored["status"] == "ok")
    assert timed["latency_ci_low_ms"].null_count() == timed["latency_ci_high_ms"].null_count() == 0
    assert json.loads(stored["env"][0])["timing"]["rounds"] == 6
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


SEEN_THREADS: list[int] = []
"""torch.get_num_threads() in each forward of ThreadsSeen (a module-level list: the
benchmark deep-copies the model, and a copy would get its own attribute)."""


class ThreadsSeen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SEEN_THREADS.append(torch.get_num_threads())
        return self.fc(x)


@pytest.mark.parametrize(("threads", "expected"), [({}, 1), ({"threads": 2}, 2)])
def test_threads_are_pinned_while_timing_recorded_and_restored(
    tmp_path: Path, threads: dict[str, int], expected: int
) -> None:
    before = torch.get_num_threads()
    SEEN_THREADS.clear()
    try:
        torch.set_num_threads(3)
        result = benchmark(
            ThreadsSeen(), torch.rand(2, 6), root=tmp_path, formats=["eager"], **threads, **FAST
        )
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert after == 3, "torch's own count is given back"
    # parity + warm-up + rounds x repeats per batch size, every call at the pinned count
    assert len(SEEN_THREADS) >= 1 + 2 * 6 and set(SEEN_THREADS) == {expected}
    assert {r.threads for r in result.results} == {expected}
    assert result.env["threads"] == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"formats": ["tensorrt"]}, "unknown export format"),
        ({"formats": ["pruned_l1_1.5"]}, "unknown export format"),
        ({"root": None}, "pass run="),
        ({"metric": "accuracy"}, "needs eval_data"),
        ({"repeats": 0}, "repeats .timed calls per round. must be"),
        ({"rounds": 5}, "rounds must be an int >= 6"),
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


class FakeClock:
    """A clock that only moves when a fake format runs: by its latency times the load."""

    def __init__(self) -> None:
        self.now = 0.0
        self.load = 1.0

    def __call__(self) -> float:
        return self.now


def test_rounds_interleave_every_unit_in_a_rotated_order() -> None:
    clock = FakeClock()
    calls: list[str] = []

    def runner(name: str, seconds: float) -> Callable[[], None]:
        def call() -> None:
            calls.append(name)
            clock.now += seconds * clock.load

        return call

    runners = {"a": runner("a", 0.001), "b": runner("b", 0.002), "c": runner("c", 0.003)}
    measured = time_rounds(runners, rounds=4, repeats=2, warmup=1, clock=clock)
    assert calls[:3] == ["a", "b", "c"], "warm-up: one untimed call each"
    assert measured.order == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert calls[3:9] == ["a", "a", "b", "b", "c", "c"]  # a round: `repeats` calls per unit
    assert measured.times["b"] == [[pytest.approx(0.002)] * 2] * 4
    assert measured.failed == {}


def test_a_load_spike_hits_every_format_of_its_round_alike() -> None:
    clock = FakeClock()
    calls: list[str] = []

    def runner(name: str, seconds: float) -> Callable[[], None]:
        def call() -> None:
            spiked = len(calls) // 2 == 3  # two units, one call each per round: round 3
            calls.append(name)
            clock.now += seconds * (10.0 if spiked else 1.0)

        return call

    units = {"eager": runner("eager", 0.002), "onnxruntime": runner("onnxruntime", 0.001)}
    measured = time_rounds(units, rounds=10, repeats=1, warmup=0, clock=clock)
    assert measured.times["eager"][3] == [pytest.approx(0.02)]
    assert measured.times["onnxruntime"][3] == [pytest.approx(0.01)]
    eager = summarise(measured.times["eager"], batch_size=1)
    onnx = summarise(measured.times["onnxruntime"], batch_size=1)
    assert (eager.p50_ms, onnx.p50_ms) == (pytest.approx(2.0), pytest.approx(1.0))
    assert onnx.ci_high_ms < eager.ci_low_ms, "the spike stays out of both intervals"


def test_a_spiked_round_moves_the_interval_not_the_median() -> None:
    rounds = [[0.001]] * 9 + [[0.05]]  # one round under load
    latency = summarise(rounds, batch_size=4)
    assert latency.p50_ms == pytest.approx(1.0)
    assert latency.ci_low_ms == pytest.approx(1.0) and latency.ci_high_ms == pytest.approx(1.0)
    assert latency.throughput == pytest.approx(4 * 10 / 0.059)
    assert latency.p90_ms > latency.p50_ms, "the tail still shows the slow calls"


def test_the_interval_of_the_median_is_a_95_percent_order_statistic_one() -> None:
    assert median_interval([5, 1, 4, 2, 3, 6]) == (1, 6)  # 6 rounds: [min, max], 96.9 %
    assert coverage(6, 1) == pytest.approx(1 - 2 / 64)
    assert median_interval(list(range(1, 11))) == (2, 9)  # 10 rounds: 97.9 %
    assert coverage(10, 2) >= 0.95 > coverage(10, 3)
    assert median_interval(list(range(1, 21))) == (6, 15)
    with pytest.raises(ValueError, match="at least one sample"):
        median_interval([])


def test_a_unit_that_raises_is_timed_no_further_and_the_others_go_on() -> None:
    clock = FakeClock()
    count = {"n": 0}

    def flaky() -> None:
        count["n"] += 1
        if count["n"] == 3:
            raise RuntimeError("out of memory")

    def steady() -> None:
        clock.now += 0.001

    measured = time_rounds(
        {"flaky": flaky, "ok": steady}, rounds=6, repeats=1, warmup=1, clock=clock
    )
    assert list(measured.failed) == ["flaky"] and "memory" in str(measured.failed["flaky"])
    assert "flaky" not in measured.times and len(measured.times["ok"]) == 6
    assert round_order(["x", "y", "z"], 4) == ["y", "z", "x"]


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
