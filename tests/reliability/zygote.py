"""A fork server for the fault tests: imports torch and the collector once, then forks
one worker per request. Dozens of killed children then cost milliseconds each
instead of a fresh interpreter (importing torch takes ~3 s on a small machine).

Protocol, JSON lines. stdin: one request per line, ``{"id": ..., "scenario": ...}``
(see ``scenarios.py``), or ``{"kill": id, "signal": n}``: signals go through the
server because only it knows whether the worker is still unreaped (its pid cannot
have been reused by an unrelated process). stdout: ``{"event": "ready"}`` once, then per worker
``{"id", "event": "forked", "pid"}``, whatever the worker emits, and
``{"id", "event": "exit", "status"}`` when it is reaped (status < 0: killed by
signal -status). EOF on stdin kills the remaining workers and ends the server.

A worker leaves the server loop and runs its scenario at the top level of this
script, so it ends like any training script: an uncaught exception is printed and
sets ``sys.last_value``, atexit handlers run, and signals have their usual effect.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability import scenarios  # noqa: E402  (imports torch and the collector)


def _emit(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())  # one write: lines never interleave


def _reap(children: dict[int, str]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        worker = children.pop(pid, None)
        if worker is not None:
            _emit({"id": worker, "event": "exit", "status": os.waitstatus_to_exitcode(status)})


def serve() -> dict[str, Any] | None:
    """Fork a worker per request: the request in the worker, None in the server at EOF."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, str] = {}
    pending = b""
    _emit({"event": "ready"})
    while True:
        readable, _, _ = select.select([0, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
        _reap(children)
        if 0 not in readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            return None
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if "kill" in request:
                for pid, worker in children.items():
                    if worker == request["kill"]:
                        os.kill(pid, request["signal"])
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
                return dict(request)
            children[pid] = request["id"]
            _emit({"id": request["id"], "event": "forked", "pid": pid})


if __name__ == "__main__":
    scenarios.warm_up()
    request = serve()
    if request is not None:
        scenarios.run(request)
