"""What a forked worker does (see ``zygote.py``): train a tiny model with the collector
under the fault its request names, and say how far it got.

Request keys (all optional but ``id``, ``scenario`` and ``root``):

    steps            optimizer steps (default: until killed, at most 60 s)
    stop_file        also stop (and close normally) once this file exists
    pace_s           sleep this long after each step (a GPU job leaves the CPU mostly idle)
    with_block       use ``with Collector(...)`` (default) or a bare ``Collector(...)``
    close            call ``close()`` at the end of a bare collector (default True)
    report_every     emit a "step" event every this many steps
    inject           {"at": "write"|"rename"|"unlink", "during": "flush"|"compaction",
                      "nth": k}: the k-th such filesystem operation emits a "phase" event
                      and then hangs, so the test can kill the worker right there
    fault            {"kind": "disk_full"|"read_only"|"vanish", "at_step": k,
                      "until_step": l or null}: the storage fails from step k (after a
                      flush) until step l (after a flush), or to the end
    drop_privileges  run as nobody (root ignores permission bits: read_only needs it)
    raise_at_step    raise ValueError after that step
    distributed      {"rank", "world_size", "port"}: join a gloo process group first
    ddp              wrap the model in DistributedDataParallel (with ``distributed``)
    collector        extra keyword arguments for ``Collector``
    fast_exit        leave with os._exit(0) after "done" (default True)

Every step logs ``i`` (the step) and ``t`` (time.time()), so the test can tell exactly
which steps reached the disk and how many seconds of them were lost.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pathlib
import resource
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from collector import Collector
from store import segments
from store.layout import parse_segment_name

Emit = Callable[..., None]

HANG_S = 60.0  # an injected hang; the test kills the worker long before


def warm_up() -> None:
    """Train a few steps with every collector feature once, in the server, before forking.

    Workers then start warm, and a worker that drops privileges (and can no longer
    read the interpreter's files under /root) never needs a lazy import.
    """
    torch.set_num_threads(1)  # no intra-op thread pool before fork()
    with tempfile.TemporaryDirectory() as root:
        model, opt = _model()
        with Collector(root, model=model, optimizer=opt, activations_every=2) as tel:
            for _ in range(4):
                _step(model, opt)
                tel.log({"loss": 1.0})
            tel.flush()


def run(request: dict[str, Any]) -> None:
    worker = request["id"]

    def emit(event: str, **fields: Any) -> None:
        message = {"id": worker, "event": event, "t": time.time(), **fields}
        os.write(1, (json.dumps(message) + "\n").encode())

    torch.set_num_threads(1)
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even if our parent ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    warnings = _capture_warnings()
    if request.get("distributed"):
        _join_group(request["distributed"])
    root: str = request["root"]
    if request.get("drop_privileges") and os.geteuid() == 0:
        # chdir first: nobody may not traverse the parents of a root-owned temp dir.
        os.chdir(root)
        os.setgid(65534)
        os.setuid(65534)
        root = "."
    if request.get("inject"):
        _inject(request["inject"], emit)
    _train(request, Path(root), emit, warnings)
    if request.get("distributed"):
        torch.distributed.destroy_process_group()
    if request.get("fast_exit", True):
        # Skip the interpreter's ~2 s teardown of torch; the run is closed already.
        # Tests of how a script's end closes a run pass fast_exit=False.
        os._exit(0)


def _train(request: dict[str, Any], root: Path, emit: Emit, warnings: list[str]) -> None:
    model, opt = _model()
    if request.get("ddp"):
        model = nn.parallel.DistributedDataParallel(model)  # gradients all-reduced
    kwargs = {"flush_every_s": 0.25, "heartbeat_every_s": 0.2, **request.get("collector", {})}
    tel = Collector(root, name=request.get("name", "fault"), model=model, optimizer=opt, **kwargs)
    emit("started", run_id=tel.run_id, rank=tel.rank, attempt=tel.attempt, step=tel.step)
    if request.get("with_block", True):
        with tel:
            summary = _loop(request, tel, model, opt, emit)
    else:
        summary = _loop(request, tel, model, opt, emit)
        if request.get("close", True):
            tel.close()
    emit("done", rows_dropped=tel.rows_dropped, warnings=warnings, **summary)


def _loop(
    request: dict[str, Any],
    tel: Collector,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    emit: Emit,
) -> dict[str, Any]:
    steps = request.get("steps")
    every = request.get("report_every", 0)
    fault = request.get("fault")
    deadline = time.monotonic() + 60.0
    longest = 0.0
    done = 0
    stop_file = request.get("stop_file")
    while (steps is None or done < steps) and time.monotonic() < deadline:
        if stop_file and done % 20 == 0 and os.path.exists(stop_file):
            break
        began = time.perf_counter()
        _step(model, opt)
        tel.log({"i": tel.step, "t": time.time()})
        longest = max(longest, time.perf_counter() - began)
        done += 1
        if request.get("pace_s"):
            time.sleep(request["pace_s"])
        if every and done % every == 0:
            emit("step", step=tel.step)
        if fault and done == fault["at_step"]:
            tel.flush()
            _break_storage(fault["kind"], tel)
        if fault and done == fault.get("until_step"):
            tel.flush()  # fails: what was logged under the fault is dropped
            _repair_storage(fault["kind"], tel)
        if request.get("raise_at_step") == done:
            raise ValueError(f"planned failure at step {done}")
    return {"steps": done, "last_step": tel.step, "longest_step_s": longest}


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


_X = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))


def _step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    loss = model(_X).pow(2).mean()
    loss.backward()
    opt.step()


def _capture_warnings() -> list[str]:
    """Collector and store writer warnings, kept in memory (stderr may be the very file
    that is full)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.name}: {record.getMessage()}")

    keep = Keep(logging.WARNING)
    for name in ("collector", "store"):  # the training-loop side and its writer
        logger = logging.getLogger(name)
        logger.addHandler(keep)
        logger.propagate = False
    return seen


def _join_group(spec: dict[str, Any]) -> None:
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{spec['port']}",
        rank=spec["rank"],
        world_size=spec["world_size"],
    )


# -- storage faults ---------------------------------------------------------------------


def _break_storage(kind: str, tel: Collector) -> None:
    if kind == "disk_full":
        # Every file write fails with EFBIG, like ENOSPC on a full disk. SIGXFSZ would
        # kill the process first: a real full disk sends no signal, so ignore it.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    elif kind == "read_only":
        for directory in _dirs(tel.run_dir):
            directory.chmod(0o555)
    elif kind == "vanish":
        shutil.rmtree(tel.run_dir)
    else:
        raise ValueError(kind)


def _repair_storage(kind: str, tel: Collector) -> None:
    if kind == "disk_full":
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    elif kind == "read_only":
        for directory in _dirs(tel.run_dir):
            directory.chmod(0o755)


def _dirs(run_dir: Path) -> list[Path]:
    return [run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())]


# -- injected hangs ---------------------------------------------------------------------


def _inject(spec: dict[str, Any], emit: Emit) -> None:
    """Make the ``nth`` write/rename/unlink of the writer thread (``during: flush``) or
    of the main thread's compaction (``during: compaction``) emit "phase" and hang.

    Patched in this worker only, inside the modules that call them; production code
    has no hook and pays nothing.
    """
    count = [0]

    def hit(what: str) -> bool:
        writer = threading.current_thread().name.startswith("telemetry-writer")
        if spec["at"] != what or writer != (spec["during"] == "flush"):
            return False
        count[0] += 1
        return count[0] == spec["nth"]

    def hang(what: str, path: object) -> None:
        emit("phase", at=what, during=spec["during"], path=str(path))
        time.sleep(HANG_S)

    real_write_table = segments.pq.write_table

    def write_table(table: Any, where: Any, **kwargs: Any) -> None:
        if not hit("write"):
            real_write_table(table, where, **kwargs)
            return
        buffer = io.BytesIO()
        real_write_table(table, buffer, **kwargs)
        data = buffer.getvalue()
        where.write(data[: len(data) // 2])  # a torn temporary file
        where.flush()
        hang("write", getattr(where, "name", "?"))
        where.write(data[len(data) // 2 :])

    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if hit("rename"):
            hang("rename", dst)  # fsynced under its temporary name, not yet published
        real_replace(src, dst)

    real_unlink = pathlib.Path.unlink

    def unlink(self: pathlib.Path, missing_ok: bool = False) -> None:
        if parse_segment_name(self.name) is not None and hit("unlink"):
            hang("unlink", self)  # the merged file is published, the originals not all gone
        real_unlink(self, missing_ok=missing_ok)

    segments.pq = _Proxy(segments.pq, write_table=write_table)  # type: ignore[assignment]
    segments.os = _Proxy(os, replace=replace)  # type: ignore[assignment]
    pathlib.Path.unlink = unlink  # type: ignore[method-assign]


class _Proxy:
    """A module with some attributes replaced."""

    def __init__(self, module: Any, **overrides: Any) -> None:
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)
