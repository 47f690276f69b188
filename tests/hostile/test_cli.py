"""The command line against hostile runs and runaway queries.

Strings from a run (names, ids, metric names, messages, config, file names) hold
terminal escapes: every human-readable output shows them escaped. A query that runs
for hours stops at ``--timeout`` (exit 124) or at Ctrl-C (exit 130), at once, with one
line and no traceback; those two run the CLI in a subprocess (a real signal, and a
hang guard that cannot hang the test session).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import telemetry.commands.runs
from analysis import Store
from telemetry.cli import main
from telemetry.common import EXIT_STORE, printable
from tests.builders import RunBuilder

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\u202e\r"
"""Set the title, clear the screen, a one-byte CSI, DEL, a bidi override, a carriage return."""
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]")
"""What must never reach the terminal (newlines are ours)."""
HANG_GUARD_S = 120.0
"""Far above any run of these tests; only there so a broken fix fails instead of hanging."""
RUNAWAY = (
    "SELECT i FROM range(1_000_000_000_000) t(i) WHERE i < 100_000 OR hash(i) % 1_000_000_007 = 0"
)
"""Hours of DuckDB work; its first 100,000 rows come at once, then almost none."""
CLI = (
    # SIGINT is ignored in a child of a background job (nohup, CI runners); Python then
    # installs no KeyboardInterrupt handler, so the child restores it: Ctrl-C's default.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from telemetry.cli import main; sys.argv[0] = 'telemetry'; main()"
)


def _raw(text: str) -> list[str]:
    return sorted(set(RAW.findall(text)))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose every string carries escapes, beside a plain one, and a stray file."""
    root = tmp_path_factory.mktemp("hostile")
    run_id = f"evil{ESCAPES}"  # a directory name can hold anything but '/' and NUL
    run = RunBuilder(
        root, run_id, name=f"name{ESCAPES}\x00", config={f"key{ESCAPES}": f"value{ESCAPES}"}
    )
    run.scalars(f"loss{ESCAPES}", f"train{ESCAPES}", [1.0, float("nan")] * 30)
    run.tensors(f"layer{ESCAPES}.weight", "grad", [1.0] * 60)
    run.fail(f"Error{ESCAPES}", f"message{ESCAPES}").write()
    RunBuilder(root, "plain").scalars("loss", "train", [1.0, 0.5]).finish().write()
    (root / f"stray{ESCAPES}.parquet").write_bytes(b"not parquet")
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "{root}"],
        ["analyze", "{root}"],
        ["query", "{root}", "SELECT * FROM runs"],
        ["query", "{root}", "SELECT * FROM scalars"],
        ["query", "{root}", "SELECT * FROM events"],
        ["query", "{root}", 'SELECT name AS "{escapes}" FROM runs'],
        ["query", "{root}", "SELECT CAST(name AS INTEGER) FROM runs"],  # quotes the value
        ["analyze", "{root}", "--run", "missing{escapes}"],
        ["report", "{root}", "-o", "{tmp}/report{escapes}.html"],
    ],
    ids=[
        "runs",
        "analyze",
        "query-runs",
        "query-scalars",
        "query-events",
        "query-header",
        "query-error",
        "analyze-unknown-run",
        "report",
    ],
)
def test_run_strings_reach_the_terminal_escaped(
    hostile: Path, tmp_path: Path, args: list[str]
) -> None:
    argv = [a.format(root=hostile, tmp=tmp_path, escapes=ESCAPES) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert _raw(result.output) == [], result.output
    assert "\\x1b]0;owned\\x07" in result.output  # shown, not dropped


def test_a_store_path_that_is_not_utf8_prints(tmp_path: Path) -> None:
    root = tmp_path / os.fsdecode(b"store\xff")  # a lone surrogate in Python's str
    RunBuilder(root, "plain").scalars("loss", "train", [1.0]).finish().write()
    result = CliRunner().invoke(main, ["analyze", str(root)])
    # (analysis cannot read the segments under such a path yet: "no runs", with warnings)
    assert result.exit_code == 0, result.output
    assert "store\\udcff" in result.output and _raw(result.output) == []


def test_a_listing_that_cannot_be_read_does_not_blame_where(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "--where None: Malformed JSON" with no --where given."""
    listing = telemetry.commands.runs._listing_sql

    def failing(store: Store) -> tuple[str, list[object]]:
        sql, params = listing(store)
        # a value that fails when it is read, as a malformed payload did
        boom = "CASE WHEN run_id IS NOT NULL THEN error('Malformed JSON') END AS boom"
        return f"SELECT *, {boom} FROM ({sql})", params

    monkeypatch.setattr(telemetry.commands.runs, "_listing_sql", failing)
    for extra in ([], ["--where", "steps > 0"]):
        result = CliRunner().invoke(main, ["runs", str(hostile), *extra])
        assert result.exit_code == EXIT_STORE, result.output
        assert "cannot list the runs in" in result.output and "Malformed JSON" in result.output
        assert "--where" not in result.output and "None" not in result.output


def test_a_where_that_cannot_be_evaluated_is_still_named(hostile: Path) -> None:
    result = CliRunner().invoke(main, ["runs", str(hostile), "--where", "CAST(name AS INT) > 0"])
    assert result.exit_code == 2, result.output
    assert "--where 'CAST(name AS INT) > 0'" in result.output


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the CLI was still running after {HANG_GUARD_S} s")
    return proc.returncode, out, err


def test_timeout_stops_a_runaway_query(hostile: Path) -> None:
    sql = "SELECT count(*) FROM range(1_000_000_000_000) WHERE hash(range) % 7 = 1"
    code, out, err = _finish(_start("query", str(hostile), sql, "--timeout", "0.5"))
    assert code == 124, err
    assert "Error: the query ran past --timeout 0.5 s and was stopped" in err
    assert "Traceback" not in err and out == ""


def test_ctrl_c_stops_a_running_query_at_once(hostile: Path) -> None:
    proc = _start("query", str(hostile), RUNAWAY, "--format", "csv")
    assert proc.stdout is not None
    # Wait for the first rows: the query is then running in DuckDB (for hours).
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + HANG_GUARD_S
        lines: list[str] = []
        while len(lines) < 2 and selector.select(timeout=deadline - time.monotonic()):
            lines.append(proc.stdout.readline())
    if len(lines) < 2:
        proc.kill()
        proc.communicate()
        pytest.fail(f"no rows after {HANG_GUARD_S} s: the result is not streamed")
    assert lines == ["i\n", "0\n"]
    proc.send_signal(signal.SIGINT)
    code, _, err = _finish(proc)  # drains stdout: a full pipe would block the writer
    assert code == 130, err
    assert err.splitlines()[-1] == "Error: interrupted (Ctrl-C)"
    assert "Traceback" not in err


def test_escaped_output_shows_every_escape_as_printable_does() -> None:
    assert printable(ESCAPES) == "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f\\u202e\\r"


def test_analyze_lists_thousands_of_skipped_files_in_a_few_lines(tmp_path: Path) -> None:
    RunBuilder(tmp_path, "plain").scalars("loss", "train", [1.0, 0.5]).finish().write()
    scalars = tmp_path / "plain" / "scalars"
    for i in range(2000):
        (scalars / f"0-9-{i:06d}.parquet").write_bytes(b"not parquet")
    result = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "skipped 2000 unreadable file(s):" in result.output
    assert "skipping 2000 entries" in result.output
    # one line per rule that could not run on this 2-point run, and a few for the files
    not_evaluated = [line for line in result.output.splitlines() if line.startswith("  plain: ")]
    assert len(result.output.splitlines()) - len(not_evaluated) < 15
