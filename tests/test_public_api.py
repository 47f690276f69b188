"""The public face of each package, and the promise that the read side never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import analysis
import collector
import telemetry
from tests.analysis import cases


def test_exported_names() -> None:
    assert set(collector.__all__) == {
        "SCHEMA_VERSION",
        "Collector",
        "ConfigError",
        "EventKind",
        "NonFiniteError",
        "StoreError",
        "Stream",
        "TelemetryError",
        "TensorKind",
    }
    assert {"open_store", "diagnose", "Store", "Finding", "Severity", "Diagnosis"} <= set(
        analysis.__all__
    )
    assert telemetry.__all__ == []


def _imports_torch(code: str) -> bool:
    probe = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip().endswith("True")


READ_VERBS = ("analyze", "report", "runs", "query")
"""The verbs that only read a store: neither importing nor running them loads torch."""


def test_read_side_and_cli_help_do_not_import_torch() -> None:
    assert not _imports_torch("import store, collector, analysis, reports")
    cli_help = (
        "from click.testing import CliRunner\nfrom telemetry.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0"
    )
    assert not _imports_torch(cli_help)


@pytest.mark.parametrize("package", ["store", "analysis", "reports"])
def test_each_read_side_package_alone_does_not_import_torch(package: str) -> None:
    assert not _imports_torch(f"import {package}")


@pytest.mark.parametrize("verb", READ_VERBS)
def test_the_module_of_a_read_verb_does_not_import_torch(verb: str) -> None:
    assert not _imports_torch(f"import telemetry.commands.{verb}")


def test_running_the_read_verbs_does_not_import_torch(tmp_path: Path) -> None:
    cases.healthy(tmp_path).write()
    verbs = [
        ["analyze", str(tmp_path), "--format", "json"],
        ["report", str(tmp_path), "-o", str(tmp_path / "report.html")],
        ["runs", str(tmp_path)],
        ["query", str(tmp_path), "SELECT count(*) FROM scalars"],
    ]
    assert [v[0] for v in verbs] == list(READ_VERBS)
    run_all = (
        "from click.testing import CliRunner\nfrom telemetry.cli import main\n"
        f"for args in {verbs!r}:\n"
        "    result = CliRunner().invoke(main, args)\n"
        "    assert result.exit_code in (0, 1), (args, result.output, result.exception)"
    )
    assert not _imports_torch(run_all)
    assert (tmp_path / "report.html").is_file()


def test_touching_collector_imports_torch_lazily() -> None:
    assert _imports_torch("import collector\ncollector.Collector")


def test_the_verbs_that_train_import_torch_only_when_they_run() -> None:
    assert not _imports_torch("import telemetry.commands.demo, telemetry.commands.export_bench")
    assert _imports_torch("import telemetry.demo")  # what they import when they run


@pytest.mark.parametrize("old", ["collector.schema", "collector.errors"])
def test_moved_store_modules_still_import_with_a_deprecation_warning(old: str) -> None:
    code = f"import warnings\nwarnings.simplefilter('error')\nimport {old}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "DeprecationWarning" in result.stderr
    assert "moved to store." in result.stderr
    quiet = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", f"from {old} import *"],
        capture_output=True,
        text=True,
    )
    assert quiet.returncode == 0, quiet.stderr


@pytest.mark.parametrize(
    ("old", "name"),
    [
        ("collector.tensorboard", "SummaryWriter"),
        ("collector.lightning", "TelemetryCallback"),
        ("collector.export", "benchmark"),
    ],
)
def test_moved_feature_modules_still_import_with_a_deprecation_warning(old: str, name: str) -> None:
    code = f"import warnings\nwarnings.simplefilter('error')\nimport {old}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "No module named 'lightning'" in result.stderr or "pytorch_lightning" in result.stderr:
        pytest.skip("lightning is not installed")
    assert result.returncode == 1 and "DeprecationWarning" in result.stderr, result.stderr
    quiet = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", f"from {old} import {name}"],
        capture_output=True,
        text=True,
    )
    assert quiet.returncode == 0, quiet.stderr
