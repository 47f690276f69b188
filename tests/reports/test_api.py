"""The public face of reports, and the promise that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import reports


def test_exported_names() -> None:
    assert reports.__all__ == ["render_report", "write_report"]


def test_import_reports_imports_neither_torch_nor_altair() -> None:
    probe = "import sys, reports\nprint(sorted({'torch', 'altair', 'duckdb'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rendering_a_report_does_not_import_torch() -> None:
    probe = (
        "import sys, tempfile\n"
        "from analysis import diagnose, open_store\n"
        "from reports import assets, render_report\n"
        # Building the JavaScript bundle takes ~3 s and cannot touch torch (vl-convert is Rust).
        "assets.javascript_bundle = lambda: ''\n"
        "from tests.builders import RunBuilder\n"
        "root = tempfile.mkdtemp()\n"
        "RunBuilder(root, 'r').scalars('loss', 'train', [1.0]).finish().write()\n"
        "store = open_store(root)\n"
        "render_report(store, diagnose(store))\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
