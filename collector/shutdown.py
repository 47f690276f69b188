"""How a run ends when its process does.

    the script returns, run still open      atexit closes it: run_finished
    uncaught exception, KeyboardInterrupt   atexit closes it: run_failed with the exception
                                            (Python has set sys.last_value by then)
    SIGTERM (kill, schedulers, torchrun)    the handler below: run_failed "Terminated"
                                            (not compacted: the grace period before
                                            SIGKILL is short), then the process still
                                            dies of SIGTERM
    SIGKILL, power loss, OOM killer         nothing can run: at most the unflushed
                                            buffer is lost, and the run reads
                                            ``crashed`` once its heartbeats stop

Python's default SIGTERM disposition ends the process at once, without atexit: the
run's last seconds would be lost and it would only show up as crashed. So while a
collector is open, and only if SIGTERM still has that default disposition, a
handler closes every open run as failed, restores the default and sends SIGTERM to
the process again, so the signal is never swallowed (exit status 143 / -15 as
before). A handler of the program's own (Lightning, submitit...) is left alone: it
has its own plan and will leave the ``with`` block or reach atexit; one installed
after ours that chains to it finds it does nothing. The handler is
installed from the main thread only (Python's rule) and removed when the last
collector closes.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from types import FrameType
from typing import Protocol

from store.errors import TelemetryError

log = logging.getLogger(__name__)


class Terminated(TelemetryError):
    """Recorded as the error of runs that were open when SIGTERM arrived (never raised)."""


class _Closable(Protocol):
    def close(self, *, error: BaseException | None = None, compact: bool = True) -> None: ...


# A weak set: we never keep a collector alive.
_open: weakref.WeakSet[_Closable] = weakref.WeakSet()
_installed = False


def register(collector: _Closable) -> None:
    """Close ``collector`` at interpreter exit or on SIGTERM unless it is closed first."""
    _open.add(collector)
    _install()


def unregister(collector: _Closable) -> None:
    _open.discard(collector)
    if not _open:
        _uninstall()


def close_all(error: BaseException | None, *, compact: bool = True) -> None:
    for collector in list(_open):
        try:
            collector.close(error=error, compact=compact)
        except Exception as e:  # one broken run must not keep the others open
            log.warning("could not close a telemetry run at shutdown: %r", e)


def _install() -> None:
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # no signals here (embedded interpreter)
        return
    _installed = True


def _uninstall() -> None:
    global _installed
    if not _installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _installed = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if signal.getsignal(signum) is not _on_sigterm:
        # A handler installed after ours called us as "the previous one" (Lightning
        # does): its plan (often a graceful stop) wins; exiting here would end it early.
        return
    try:
        # No compaction: a scheduler's SIGKILL follows SIGTERM after a grace period, and
        # the rows are safe on disk without it.
        close_all(Terminated(f"the process received {signal.Signals(signum).name}"), compact=False)
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


@atexit.register
def _close_at_exit() -> None:
    error = getattr(sys, "last_value", None)
    close_all(error if isinstance(error, BaseException) else None)
