"""The public face of each package, and the promise that the read side never imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import analysis
import collector
import telemetry


def test_exported_names() -> None:
    assert set(collector.__all__) == {
        "SCHEMA_VERSION",
        "Collector",
        "ConfigError",
        "EventKind",
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


def test_read_side_and_cli_help_do_not_import_torch() -> None:
    assert not _imports_torch("import collector, analysis, reports")
    cli_help = (
        "from click.testing import CliRunner\nfrom telemetry.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0"
    )
    assert not _imports_torch(cli_help)


def test_touching_collector_imports_torch_lazily() -> None:
    assert _imports_torch("import collector\ncollector.Collector")


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
