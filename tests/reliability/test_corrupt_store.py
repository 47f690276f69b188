"""Corrupt input: what ``telemetry analyze`` and ``telemetry report`` do with a store that
holds torn, foreign, future or misplaced files next to a good run.

They skip each bad file, name it in a warning, and report the rest; neither fails.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import analysis
from collector import Collector
from store.schema import SCHEMA_VERSION_KEY, SCHEMAS, Stream
from telemetry.cli import main

from .conftest import report


def _good_run(root: Path) -> Collector:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Collector(root, name="good", model=model, optimizer=opt) as tel:
        for _ in range(12):
            opt.zero_grad()
            loss = model(torch.ones(8, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            tel.log({"loss": loss}, split="train")
    return tel


def _corrupt(root: Path, run_dir: Path) -> dict[str, str]:
    """Plant every kind of bad file; returns {name in the warning: what it is}."""
    scalars = run_dir / "scalars"
    good = next(scalars.glob("*.parquet")).read_bytes()
    planted = {
        "0-9-000001.parquet": "truncated segment",
        "0-9-000002.parquet": "garbage",
        "0-9-000003.parquet": "zero bytes",
        "0-9-000004.parquet": "footer fine, data pages garbage",
        "0-9-000005.parquet": "future schema version",
        "0-9-000006.parquet": "a directory named like a segment",
        "notes.txt": "stray file in a stream directory",
        "stray_stream": "directory that is no stream",
        "README": "stray file at the top of the store",
        "empty-run": "empty run directory",
    }
    (scalars / "0-9-000001.parquet").write_bytes(good[: len(good) // 2])
    (scalars / "0-9-000002.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 40)
    (scalars / "0-9-000003.parquet").write_bytes(b"")
    pages = bytearray(good)
    footer = int.from_bytes(pages[-8:-4], "little") + 8
    for i in range(4, len(pages) - footer):  # keep the magic and the footer, ruin the data
        pages[i] = 0xFF
    (scalars / "0-9-000004.parquet").write_bytes(bytes(pages))
    future = SCHEMAS[Stream.SCALARS].with_metadata({SCHEMA_VERSION_KEY: b"999"})
    pq.write_table(pa.Table.from_batches([], schema=future), scalars / "0-9-000005.parquet")
    (scalars / "0-9-000006.parquet").mkdir()
    (scalars / "notes.txt").write_text("stray")
    (run_dir / "stray_stream").mkdir()
    (root / "README").write_text("a stray file at the top of the store")
    (root / "empty-run").mkdir()
    return planted


def test_analyze_and_report_skip_and_name_every_bad_file_and_report_the_good_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "runs"
    tel = _good_run(root)
    with analysis.open_store(root) as store:
        rows_before = store.sql("SELECT count(*) AS n FROM raw_scalars")["n"][0]
    planted = _corrupt(root, tel.run_dir)

    with analysis.open_store(root) as store:
        skipped = {u.path.name: u.reason for u in store.unreadable}
        assert set(skipped) == set(planted), skipped
        assert store.sql("SELECT count(*) AS n FROM raw_scalars")["n"][0] == rows_before
        assert store.run_ids() == [tel.run_id]

    runner = CliRunner()
    with caplog.at_level(logging.WARNING, logger="analysis.store"):
        analyzed = runner.invoke(main, ["analyze", str(root)])
    assert analyzed.exit_code == 0, analyzed.output
    assert tel.run_id in analyzed.output
    for name in planted:
        assert name in analyzed.output, name  # the table output lists what it skipped
        assert name in caplog.text, name  # and each is a logged warning
    caplog.clear()

    out = tmp_path / "report.html"
    with caplog.at_level(logging.WARNING, logger="analysis.store"):
        reported = runner.invoke(main, ["report", str(root), "-o", str(out)])
    assert reported.exit_code == 0, reported.output
    assert tel.run_id in out.read_text()
    for name in planted:
        assert name in caplog.text, name
    report(
        "Corrupt input",
        [
            f"{len(planted)} bad entries next to a good run: {', '.join(planted.values())}",
            "open_store, `telemetry analyze` and `telemetry report`: exit 0, each bad entry "
            "skipped and named in a warning, the good run analysed and reported in full",
        ],
    )
