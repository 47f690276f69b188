"""Probes that held before the hostile-input issue, kept so they keep holding: the SQL
sandbox of ``telemetry query``, a huge sparse file posing as a segment, a symbolic link
out of the store, and markup in every string a run can write."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import analysis
from collector import Collector
from telemetry.cli import main

SCRIPT = "<script>alert(1)</script>"


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module(SCRIPT, nn.Linear(2, 2))  # a module name may hold markup
        self.out = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(getattr(self, SCRIPT)(x))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run whose every string field holds markup, and one that failed with it."""
    root = tmp_path_factory.mktemp("probes")
    torch.manual_seed(0)
    model = _Named()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    config = {SCRIPT: SCRIPT, "nested": {"k": [SCRIPT]}}
    with Collector(root, name=SCRIPT, config=config, model=model, optimizer=opt) as tel:
        for step in range(25):
            opt.zero_grad()
            loss = model(torch.ones(4, 2)).pow(2).mean()
            loss.backward()
            opt.step()
            tel.log({"loss": loss, SCRIPT: 1.0}, split="train")
            if step % 5 == 4:
                tel.log({"loss": loss.item()}, split=SCRIPT)
    with pytest.raises(RuntimeError), Collector(root, name="failed", config={"x": 1}) as tel:
        tel.log({"loss": 1.0}, step=1)
        raise RuntimeError(SCRIPT)
    return root


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "COPY (SELECT * FROM runs) TO '{out}'",
        "ATTACH '{out}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW runs",
        "DROP VIEW runs",
        "CREATE TABLE t AS SELECT 1",
        "PRAGMA database_list",
        "CALL pragma_version()",
    ],
)
def test_the_query_sandbox_refuses_files_writes_extensions_and_more_statements(
    store: Path, tmp_path: Path, sql: str
) -> None:
    out = tmp_path / "leaked"
    result = CliRunner().invoke(main, ["query", str(store), sql.format(out=out)])
    assert result.exit_code != 0, result.output
    assert "root:" not in result.output  # no line of /etc/passwd
    assert "Traceback" not in result.output
    assert not out.exists()
    again = CliRunner().invoke(main, ["query", str(store), "SELECT count(*) AS n FROM runs"])
    assert again.exit_code == 0 and "2" in again.output  # the views are all still there


def test_a_sparse_2_gb_file_named_like_a_segment_is_named_not_read(store: Path) -> None:
    run = next(p for p in store.iterdir() if p.name.startswith("failed"))
    huge = run / "scalars" / "0-7-000001.parquet"
    with huge.open("wb") as f:
        f.truncate(2 * 2**30)  # sparse: no disk, but 2 GB to a reader that reads it all
    try:
        with analysis.open_store(store) as s:
            assert any(u.path.name == huge.name for u in s.unreadable)
            assert s.sql("SELECT count(*) AS n FROM runs").item() == 2
        result = CliRunner().invoke(
            main, ["analyze", str(store), "--format", "json", "--fail-on", "never"]
        )
        assert result.exit_code == 0, result.output
        assert '"rule": "run_failed"' in result.output  # the store's failed run, explained
    finally:
        huge.unlink()


def test_a_segment_linked_to_a_file_outside_the_store_is_not_read(store: Path) -> None:
    run = next(p for p in store.iterdir() if p.name.startswith("failed"))
    link = run / "scalars" / "0-8-000001.parquet"
    link.symlink_to("/etc/passwd")
    try:
        with analysis.open_store(store) as s:
            assert any(u.path.name == link.name for u in s.unreadable)
        result = CliRunner().invoke(
            main, ["query", str(store), "SELECT name, split FROM scalars", "--format", "csv"]
        )
        assert result.exit_code == 0, result.output
        assert "root:" not in result.output
    finally:
        link.unlink()


def test_markup_in_every_string_field_is_text_in_the_report_and_the_cli(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(store), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert SCRIPT not in page  # escaped in HTML, and as \u003c... inside embedded JSON
    assert "alert(1)" in page  # the text itself is there, shown as text
    for verb in (["runs", str(store)], ["analyze", str(store)]):
        result = CliRunner().invoke(main, verb)
        assert result.exit_code in (0, 1), result.output
