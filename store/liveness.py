"""Whether the process writing a run is alive: known at once on the host it runs on.

A run's ``run_started`` event records its ``host``, ``pid`` and ``process``: the
identity of that process, ``<boot id>:<pid namespace>:<start time>`` (Linux, from
``/proc``; None elsewhere). A reader on the same host, in the same pid namespace,
knows the writer is gone when no process has that pid, or the one that has it started
at another time (the pid was reused), or the host rebooted since. Anywhere else
(another host, a container with its own pid namespace, no ``/proc``) it cannot tell,
and the heartbeat decides
(``stale_after_s``). A run whose writers are all gone, without an ending event, is
``crashed`` at once: ``telemetry runs`` right after a ``kill -9`` says so.
"""

from __future__ import annotations

import functools
import os
import socket


@functools.cache
def this_host() -> str:
    return socket.gethostname()


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


@functools.cache
def _boot_and_namespace() -> str | None:
    """``<boot id>:<pid namespace inode>`` of this process; None without ``/proc``."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}" if boot else None


def process_identity(pid: int) -> str | None:
    """``<boot id>:<pid namespace>:<start time in clock ticks>`` of process ``pid`` as
    this process sees it; None where ``/proc`` cannot say (no such process included)."""
    prefix = _boot_and_namespace()
    stat = _read(f"/proc/{pid}/stat")
    if prefix is None or stat is None:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    try:
        return f"{prefix}:{int(fields[19])}"  # field 22 of proc(5): starttime
    except (IndexError, ValueError):
        return None


def writer_gone(host: object, pid: object, identity: object) -> bool:
    """True only when this reader is sure the process that started a run has ended: it
    ran here, in this pid namespace, and ``pid`` is now no process or another one."""
    if host != this_host() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    prefix = _boot_and_namespace()
    if not isinstance(identity, str) or prefix is None:
        return False  # written without an identity, or no /proc here: cannot tell
    boot, namespace, _ = identity.split(":", 2) if identity.count(":") >= 2 else ("", "", "")
    here_boot, here_namespace = prefix.split(":", 1)
    if boot != here_boot:
        return bool(boot)  # this host rebooted since: every process of then is gone
    if namespace != here_namespace:
        return False  # another pid namespace (a container): its pids mean nothing here
    return process_identity(pid) != identity


def started_writers_sql(dialect: str = "duckdb") -> str:
    """The query, over a ``raw_events`` view, of each writer that started and did not
    end: run_id, attempt, host, pid, process (the rows ``gone_runs`` takes)."""
    field = "json_extract_string" if dialect == "duckdb" else "get_json_object"
    return f"""
SELECT s.run_id, s.attempt, {field}(s.payload, '$.host') AS host,
       try_cast({field}(s.payload, '$.pid') AS BIGINT) AS pid,
       {field}(s.payload, '$.process') AS process
FROM raw_events s
WHERE s.kind = 'run_started' AND NOT EXISTS (
    SELECT 1 FROM raw_events e
    WHERE e.run_id = s.run_id AND e.rank = s.rank AND e.attempt = s.attempt
      AND e.kind IN ('run_finished', 'run_failed')
)"""


def gone_runs(writers: list[tuple[str, int, object, object, object]]) -> list[str]:
    """The runs (from ``started_writers_sql``'s rows) whose every writer of their latest
    started attempt is known gone (``writer_gone``)."""
    latest: dict[str, int] = {}
    for run_id, attempt, *_ in writers:
        latest[run_id] = max(latest.get(run_id, attempt), attempt)
    alive: dict[str, bool] = {}
    for run_id, attempt, host, pid, process in writers:
        if attempt == latest[run_id]:
            dead = writer_gone(host, pid, process)
            alive[run_id] = alive.get(run_id, False) or not dead
    return sorted(run_id for run_id, any_alive in alive.items() if not any_alive)
