"""``telemetry watch``: live lines and findings from runs still training."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from collector import Collector
from telemetry.cli import main

CHILD = """
import math, os, sys, time, torch
from collector import Collector
root, flag = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
m = torch.nn.Linear(4, 1)
o = torch.optim.SGD(m.parameters(), lr=0.05)
with Collector(root, name="live", model=m, optimizer=o, flush_every_s=0.1) as tel:
    for i in range(1, 10**6):
        x = torch.randn(8, 4)
        loss = (m(x) - x.sum(1, keepdim=True)).pow(2).mean()
        o.zero_grad()
        loss.backward()
        o.step()
        tel.log({"loss": loss if i != 30 else torch.tensor(math.nan)})
        if i >= 30 and os.path.exists(flag):
            break
        time.sleep(0.005)
"""

WATCH = [sys.executable, "-c", "from telemetry.cli import main; main()", "watch"]


def _start_child(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    root, flag = tmp_path / "runs", tmp_path / "flag"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(flag)])
    deadline = time.monotonic() + 60
    while not any(root.glob("*/events/*.parquet")):  # its first event is on disk
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return child, root, flag


def test_watch_prints_a_finding_of_a_live_run_before_it_ends(tmp_path: Path) -> None:
    child, root, flag = _start_child(tmp_path)
    watch = subprocess.Popen(
        [*WATCH, str(root), "--every", "0.2", "--fail-on", "error"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        seen = []
        for line in watch.stdout:
            seen.append(line)
            if "ERROR nonfinite" in line:
                assert child.poll() is None, "the finding came after the run ended"
                break
        else:
            raise AssertionError("no finding before watch ended:\n" + "".join(seen))
        assert any("watching live-" in line for line in seen)
        flag.touch()
        child.wait(60)
        watch.wait(60)
        # The same file object: the lines its iterator read ahead (the rest of the
        # finding's tick) are in its buffer, which communicate() would skip.
        rest = watch.stdout.read()
        err = watch.stderr.read() if watch.stderr is not None else ""
    finally:
        flag.touch()
        child.kill()
        watch.kill()
        for pipe in (watch.stdout, watch.stderr):
            if pipe is not None:
                pipe.close()
    assert "all watched runs have ended: live finished" in rest, rest + err
    assert "live  running   step" in "".join(seen) + rest  # a live line while it ran
    assert "ERROR nonfinite" not in rest  # each finding once
    assert watch.returncode == 1  # --fail-on error and an error finding
    assert "Traceback" not in err


def test_watch_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    child, root, flag = _start_child(tmp_path)
    watch = subprocess.Popen(
        [*WATCH, str(root), "--every", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert "watching live-" in watch.stdout.readline()
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        flag.touch()
        child.wait(60)
        watch.kill()
    assert watch.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def test_watch_of_ended_runs_and_of_nothing(tmp_path: Path) -> None:
    with Collector(tmp_path, name="done") as tel:
        tel.log({"loss": 1.0}, step=1)
        tel.log({"loss": math.nan}, step=2)
        run_id = tel.run_id
    runner = CliRunner()
    result = runner.invoke(main, ["watch", str(tmp_path)])
    assert result.exit_code == 0
    assert result.output.startswith("no running run in")
    result = runner.invoke(main, ["watch", str(tmp_path), "--run", run_id])
    assert "done  finished  step       2" in result.output
    assert "ERROR nonfinite" in result.output
    assert "all watched runs have ended: done finished" in result.output
    assert result.exit_code == 0  # --fail-on never
    failing = runner.invoke(main, ["watch", str(tmp_path), "--run", run_id, "--fail-on", "error"])
    assert failing.exit_code == 1
    assert (
        runner.invoke(
            main, ["watch", str(tmp_path), "--fail-on", "failed", "--run", run_id]
        ).exit_code
        == 0
    )
    unknown = runner.invoke(main, ["watch", str(tmp_path), "--run", "nope"])
    assert unknown.exit_code == 2 and "no run nope" in unknown.output
    missing = runner.invoke(main, ["watch", str(tmp_path / "missing")])
    assert missing.exit_code == 3
