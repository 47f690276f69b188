"""Fixtures of the fault suite: a fork server of training workers, and store checks."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
import pytest

import analysis
from store.schema import Stream

ZYGOTE = Path(__file__).with_name("zygote.py")
REPO = Path(__file__).resolve().parents[2]


class Worker:
    """One forked training process, seen through the events it emits."""

    def __init__(self, server: Server, worker_id: str) -> None:
        self.server = server
        self.id = worker_id
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.pid = 0
        self.status: int | None = None

    def expect(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next ``event`` this worker emits; fails if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(self._story(f"no {event!r} within {timeout} s")) from None
            self.seen.append(message)
            if message["event"] == "exit":
                self.status = message["status"]
            if message["event"] == event:
                return message
            if message["event"] == "exit":
                raise AssertionError(self._story(f"exited before {event!r}"))

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Send ``sig`` unless the worker has ended; the wall time just before it was sent."""
        sent = time.time()
        self.server.send({"kill": self.id, "signal": int(sig)})
        return sent

    def wait(self, timeout: float = 60.0) -> int:
        if self.status is None:
            self.expect("exit", timeout)
        assert self.status is not None
        return self.status

    def exited(self) -> bool:
        """Whether the worker is known to have ended (read or still queued)."""
        return self.status is not None or any(m["event"] == "exit" for m in list(self.inbox.queue))

    def event(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.seen if m["event"] == name), None)

    def _story(self, what: str) -> str:
        events = [m["event"] for m in self.seen]
        return f"worker {self.id}: {what}; events {events}\n{self.server.stderr_tail()}"


class Server:
    """``zygote.py`` in a subprocess: forks a worker per request."""

    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("RANK", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env=env,
        )
        self._workers: dict[str, Worker] = {}
        self._ready = threading.Event()
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(180):
            raise RuntimeError(f"the fork server did not start\n{self.stderr_tail()}")

    def start(self, scenario: str = "train", **request: Any) -> Worker:
        worker = Worker(self, f"w{next(self._ids)}")
        self._workers[worker.id] = worker
        self.send({"id": worker.id, "scenario": scenario, **request})
        worker.pid = worker.expect("forked", 30)["pid"]
        return worker

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def stderr_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-n:]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the server kills what is left and exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            message = json.loads(raw)
            if message["event"] == "ready":
                self._ready.set()
                continue
            worker = self._workers.get(message["id"])
            if worker is not None:
                worker.inbox.put(message)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("zygote") / "stderr.log")
    yield srv
    srv.close()


@pytest.fixture
def spawn(server: Server) -> Iterator[Callable[..., Worker]]:
    """Start workers; any still running when the test ends is killed."""
    mine: list[Worker] = []

    def start(scenario: str = "train", **request: Any) -> Worker:
        worker = server.start(scenario, **request)
        mine.append(worker)
        return worker

    yield start
    for worker in mine:
        if not worker.exited():
            worker.kill()


# -- checks on a store -------------------------------------------------------------------


def unreadable_files(root: Path) -> list[str]:
    """Every published file under ``root`` that plain pyarrow cannot read (hidden ones
    skipped), or, for a writer's digest, that ``read_digest`` refuses."""
    from store.digest import DIGEST_DIR, read_digest

    bad = []
    for path in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.is_file() and not hidden:
            try:
                if path.parent.name == DIGEST_DIR:
                    read_digest(path)
                else:
                    pq.read_table(path)
            except Exception as e:
                bad.append(f"{path.relative_to(root)}: {e}")
    return bad


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp") if p.is_file()]


def duplicated_rows(store: analysis.Store) -> dict[str, int]:
    """Per stream, rows read more than once (the same writer and seq)."""
    out = {}
    for stream in Stream:
        n, distinct = store.sql(
            f"SELECT count(*) AS n, count(DISTINCT (run_id, rank, attempt, seq)) AS d "
            f"FROM raw_{stream.value}"
        ).row(0)
        if n != distinct:
            out[stream.value] = n - distinct
    return out


OUTCOMES: list[tuple[str, list[str]]] = []


def report(title: str, lines: list[str]) -> None:
    """Record measured outcomes: printed in the test's output and in the session summary."""
    OUTCOMES.append((title, lines))
    print(f"\n== {title}")
    for line in lines:
        print(f"   {line}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OUTCOMES:
        terminalreporter.section("fault suite: measured outcomes")
        for title, lines in OUTCOMES:
            terminalreporter.write_line(title)
            for line in lines:
                terminalreporter.write_line(f"    {line}")
