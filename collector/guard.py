"""The one place where exceptions from inside the training step are stopped.

Every hook entry point is wrapped with ``guarded``: after start-up nothing the
collector does may raise into the user's training loop, but ``NonFiniteError``, which
the user asked for (``Collector(on_nonfinite="raise")``). The first failure of each
entry point is logged with its traceback; later ones are only counted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from store.errors import NonFiniteError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class GuardCounters:
    """Failures per entry point; shared by the hooks of one collector."""

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}


def guarded(counters: GuardCounters, name: str) -> Callable[[F], F]:
    """Wrap a hook so that an exception is logged once, counted, and swallowed."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except NonFiniteError:
                raise  # the NaN guard's "raise": asked for, not a failure of the hook
            except Exception:
                seen = counters.failures.get(name, 0)
                counters.failures[name] = seen + 1
                if not seen:
                    log.warning(
                        "telemetry hook %s failed; training continues without it",
                        name,
                        exc_info=True,
                    )
                return None

        return inner  # type: ignore[return-value]

    return wrap
