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
from telemetry.commands.export_bench import export_bench

FAST = ["--warmup", "1", "--repeats", "3", "--threads", "1"]
FACTORY = "tests.telemetry.test_export_bench:tiny_mlp"


def tiny_mlp() -> nn.Module:
    """The factory the tests name with --model (the CLI imports it like a user's)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(export_bench, list(args), catch_exceptions=False)


def _table_rows(output: str) -> list[list[str]]:
    """The rows of the printed table (between the dashes and the blank line)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    end = lines.index("", start)
    return [line.split() for line in lines[start:end]]


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
    rows = _table_rows(result.output)
    timed = [r for r in rows if r[-1] == "ok"]
    assert {(r[0], r[1]) for r in timed} == {
        (f, b) for f in ("eager", "torchscript_trace", "dynamic_int8") for b in ("1", "8")
    }
    for batch in ("1", "8"):
        p50s = [float(r[2]) for r in timed if r[1] == batch]
        assert p50s == sorted(p50s), "fastest first within a batch size"
    assert rows[-1][0] == "fp16" and rows[-1][-1] == "failed"  # failures last
    assert "fp16 failed: FormatUnavailable: fp16 is measured on CUDA only" in result.output
    eager = next(r for r in timed if r[0] == "eager")
    assert eager[7:9] == ["0", "0"]  # eager's parity with itself
    run_id = re.search(r"export benchmark of run (\S+)", result.output)
    assert run_id is not None
    store = open_store(root)
    assert store.sql("SELECT run_id, name FROM runs").rows() == [(run_id.group(1), "tiny_mlp")]
    assert store.sql("SELECT count(*) FROM exports").item() == 7  # 3 formats x 2 + fp16


def test_weights_are_the_ones_measured(tmp_path: Path, weights: Path) -> None:
    args = ["--model", FACTORY, "--input-shape", "2,1,4,4", "--formats", "eager"]
    result = _invoke(*args, "--weights", str(weights), "--root", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
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
    rows = _table_rows(result.output)
    assert sorted(r[0] for r in rows) == ["dynamic_int8", "eager", "torchscript_script"]
    assert all(r[-1] == "ok" and float(r[9]) > 0.9 for r in rows)  # a trained CNN
    store = open_store(root)
    (name, status, steps) = store.sql("SELECT name, status, steps FROM runs").row(0)
    assert (name, status) == ("healthy", "finished") and steps > 0
    stored = store.sql("SELECT DISTINCT step FROM exports")["step"].to_list()
    assert stored == [steps], "the benchmark is recorded at the end of training"
