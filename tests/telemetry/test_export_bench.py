"""``telemetry export-bench`` through click's CliRunner (the command object itself)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

from analysis import open_store
from exports.benchmark import ExportBenchmark, ExportResult
from store.schema import ExportStatus
from telemetry.cli import main
from telemetry.commands.export_bench import export_bench, format_table, judge
from tests.analysis.export_cases import ExportRunBuilder, timed

FAST = ["--warmup", "1", "--rounds", "6", "--repeats", "1"]
FACTORY = "tests.telemetry.test_export_bench:tiny_mlp"


def tiny_mlp() -> nn.Module:
    """The factory the tests name with --model (the CLI imports it like a user's)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


class OnesLinear(nn.Module):
    """Outputs 1 + 0.22 = 1.22 whatever the input; pruning half of its two weights drops
    the 0.22: 18 % of the output scale, beyond the 10 % a lossy format may move it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.22]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ones_like(x))


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(export_bench, list(args), catch_exceptions=False)


def _table(output: str) -> list[dict[str, str]]:
    """The rows of the printed table (between the dashes and the blank line), by heading;
    cells are at least two spaces apart, and a cell never holds two spaces."""
    lines = output.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("---"))
    heads = re.split(r"\s{2,}", lines[dashes - 1].strip())
    end = lines.index("", dashes)
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[dashes + 1 : end]]
    assert all(len(r) == len(heads) for r in rows), rows
    return [dict(zip(heads, r, strict=True)) for r in rows]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    path = tmp_path / "mlp.pt"
    torch.save(tiny_mlp().state_dict(), path)
    return path


def test_model_factory_is_measured_stored_and_printed_fastest_first(
    tmp_path: Path, weights: Path
) -> None:
    root = tmp_path / "runs"
    formats = "torchscript_trace,dynamic_int8,fp16"
    result = _invoke(
        "--model", FACTORY, "--weights", str(weights), "--input-shape", "2,1,4,4",
        "--root", str(root), "--formats", formats, "--batch-sizes", "1,8", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "format" in result.output and "max |diff|" in result.output and "rel diff" in result.output
    )
    rows = _table(result.output)
    timed = [r for r in rows if r["status"] == "ok"]
    assert {(r["format"], r["batch"]) for r in timed} == {
        (f, b) for f in ("eager", "torchscript_trace", "dynamic_int8") for b in ("1", "8")
    }
    for batch in ("1", "8"):
        p50s = [float(r["p50 ms"]) for r in timed if r["batch"] == batch]
        assert p50s == sorted(p50s), "lowest p50 first within a batch size"
    for r in timed:
        low, high = (float(v) for v in r["95% interval"].split("-"))
        assert low <= float(r["p50 ms"]) <= high
    assert rows[-1]["format"] == "fp16" and rows[-1]["status"] == "failed"  # failures last
    assert rows[-1]["parity"] == "not measured"
    assert "fp16 failed: FormatUnavailable: fp16 is measured on CUDA only" in result.output
    eager = next(r for r in timed if r["format"] == "eager")
    assert (eager["max |diff|"], eager["rel diff"]) == ("0", "0")  # eager's parity with itself
    assert (eager["parity"], eager["vs eager"]) == ("baseline", "baseline")
    trace = next(r for r in timed if r["format"] == "torchscript_trace")
    assert trace["parity"] == "ok"
    assert "6 interleaved rounds of 1 calls per format" in result.output
    run_id = re.search(r"export benchmark of run (\S+)", result.output)
    assert run_id is not None
    store = open_store(root)
    assert store.sql("SELECT run_id, name FROM runs").rows() == [(run_id.group(1), "tiny_mlp")]
    assert store.sql("SELECT count(*) FROM exports").item() == 7  # 3 formats x 2 + fp16


def test_weights_are_the_ones_measured(tmp_path: Path, weights: Path) -> None:
    args = ["--model", FACTORY, "--input-shape", "2,1,4,4", "--formats", "eager"]
    result = _invoke(*args, "--weights", str(weights), "--root", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stderr: the store warns of the .pt file in its root
    assert {r["format"] for r in data["results"]} == {"eager"}
    assert data["env"]["inputs"] == [{"shape": [2, 1, 4, 4], "dtype": "torch.float32"}]
    loaded = torch.load(weights, weights_only=True)
    fresh = tiny_mlp()
    assert not torch.equal(fresh.state_dict()["1.weight"], loaded["1.weight"])


def test_csv_has_a_header_and_one_line_per_row(tmp_path: Path) -> None:
    result = _invoke(
        "--model", FACTORY, "--input-shape", "1,16", "--formats", "eager",
        "--batch-sizes", "1,2,4", "--root", str(tmp_path), "--format", "csv", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("format,batch_size,status,error,latency_p50_ms")
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2", "4"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --demo or --model"),
        (["--model", "nope"], "expected PKG.MODULE:FACTORY"),
        (["--model", "tests.telemetry.nowhere:f", "--input-shape", "1,16"], "cannot import"),
        (["--model", "json:JSONDecoder", "--input-shape", "1,16"], "not a torch.nn.Module"),
        (["--model", "json:dumps", "--input-shape", "1,16"], "json:dumps() raised TypeError"),
        (["--model", FACTORY], "needs --input-shape"),
        (["--model", FACTORY, "--input-shape", "1,0"], "positive integers"),
        (["--model", FACTORY, "--input-shape", "1,16", "--formats", "tflite"], "unknown export"),
        (["--demo", "--input-shape", "1,16"], "go with --model"),
    ],
)
def test_bad_usage_exits_2_and_says_what_to_fix(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(export_bench, [*args, "--root", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_weights_that_do_not_fit_are_bad_usage(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 3).state_dict(), other)
    result = CliRunner().invoke(
        export_bench, ["--model", FACTORY, "--input-shape", "1,16", "--weights", str(other)]
    )
    assert result.exit_code == 2
    assert "cannot load" in result.output and "tiny" not in result.output.lower().split(":")[0]


def test_table_and_analyze_give_one_parity_verdict(tmp_path: Path) -> None:
    """A pruned model 18 % off eager (no eval data): the table and telemetry analyze's
    export_parity flag it alike, and agree on every other format."""
    root = tmp_path / "runs"
    factory = "tests.telemetry.test_export_bench:OnesLinear"
    args = ["--model", factory, "--input-shape", "2,2", "--root", str(root), *FAST]
    result = _invoke(*args, "--formats", "torchscript_trace,pruned_l1_0.5", "--batch-sizes", "1")
    assert result.exit_code == 0, result.output
    table = {r["format"]: r for r in _table(result.output)}
    assert table["pruned_l1_0.5"]["rel diff"] == "0.18"
    assert table["pruned_l1_0.5"]["status"] == "ok", "it ran..."
    assert table["pruned_l1_0.5"]["parity"] == "outputs differ", "...and changes the model"
    analyzed = CliRunner().invoke(main, ["analyze", str(root), "--format", "json"])
    findings = json.loads(analyzed.output)["findings"]
    flagged = {
        f["subject"]: f["evidence"]["verdict"] for f in findings if f["rule"] == "export_parity"
    }
    assert flagged == {"pruned_l1_0.5": "outputs differ"}
    failing = {"outputs differ", "metric drop", "non-finite"}
    assert {fmt for fmt, r in table.items() if r["parity"] in failing} == set(flagged)
    as_json = json.loads(_invoke(*args, "--formats", "pruned_l1_0.5", "--format", "json").output)
    assert {r["format"]: r["parity"] for r in as_json["results"]} == {
        "eager": "baseline",
        "pruned_l1_0.5": "outputs differ",
    }


def test_threads_are_pinned_to_one_by_default_and_recorded(tmp_path: Path) -> None:
    args = ["--model", FACTORY, "--input-shape", "1,16", "--formats", "onnxruntime"]
    result = _invoke(*args, "--root", str(tmp_path), "--format", "json", *FAST)
    data = json.loads(result.output)
    assert data["env"]["threads"] == 1
    assert {(r["format"], r["threads"]) for r in data["results"]} == {
        ("eager", 1),
        ("onnxruntime", 1),  # read back from the ONNX Runtime session
    }
    stored = open_store(tmp_path).sql("SELECT DISTINCT threads FROM exports")
    assert stored["threads"].to_list() == [1]


def test_vs_eager_refuses_a_ratio_where_the_intervals_overlap(tmp_path: Path) -> None:
    onnx = timed("onnxruntime", {1: 0.30, 32: 0.5}, spread=0.2, max_rel_diff=0.0)
    trace = timed("torchscript_trace", {1: 0.45, 32: 1.0}, max_rel_diff=0.0)
    eager = timed("eager", {1: 0.32, 32: 1.6}, spread=0.2, max_rel_diff=0.0)
    rows = [*eager, *onnx, *trace]
    ExportRunBuilder(tmp_path, "r").exports(rows).finish().write()
    judged = judge(tmp_path, "r")
    assert judged.speed("onnxruntime", 1) == "≈ eager (intervals overlap)"
    assert judged.speed("onnxruntime", 32) == "3.2x faster"
    assert judged.speed("torchscript_trace", 1) == "1.4x slower"
    assert judged.speed("eager", 1) == "baseline" and judged.speed("eager", None) is None
    results = [
        ExportResult(
            r["format"], r["batch_size"], ExportStatus.OK,
            latency_p50_ms=r["latency_p50_ms"], latency_ci_low_ms=r["latency_ci_low_ms"],
            latency_ci_high_ms=r["latency_ci_high_ms"], max_rel_diff=0.0,
        )
        for r in rows
    ]  # fmt: skip
    text = format_table(ExportBenchmark("r", results, {}), root=tmp_path, judged=judged)
    table = {(r["format"], r["batch"]): r["vs eager"] for r in _table(text)}
    assert table["onnxruntime", "1"] == "≈ eager (intervals overlap)"
    assert table["onnxruntime", "32"] == "3.2x faster"
    assert table["eager", "1"] == "baseline"


def test_help_shows_an_example() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0 and "Example" in result.output
    assert "telemetry export-bench --demo" in result.output


@pytest.mark.slow
def test_demo_trains_the_cnn_and_measures_its_accuracy(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    result = _invoke(
        "--demo", "--root", str(root), "--formats", "torchscript_script,dynamic_int8",
        "--batch-sizes", "4", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training the demo CNN" in result.output
    assert "metric: accuracy on the eval data" in result.output
    rows = _table(result.output)
    assert sorted(r["format"] for r in rows) == ["dynamic_int8", "eager", "torchscript_script"]
    assert all(r["status"] == "ok" and float(r["metric"]) > 0.9 for r in rows)  # a trained CNN
    assert all(r["parity"] in ("baseline", "ok") for r in rows)
    store = open_store(root)
    (name, status, steps) = store.sql("SELECT name, status, steps FROM runs").row(0)
    assert (name, status) == ("healthy", "finished") and steps > 0
    stored = store.sql("SELECT DISTINCT step FROM exports")["step"].to_list()
    assert stored == [steps], "the benchmark is recorded at the end of training"
