"""Validation at the door: every argument of ``Collector(...)`` (and ``record()``)
checked before anything is created, with a message that quotes the bad value; and the
rule of one open collector per model and optimizer.

Two collectors on one model would both hook it and record every statistic twice, so
the second is refused (``ConfigError`` naming the first run) until the first is
closed. After start-up nothing here runs: hooks never raise (``collector.guard``).
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from store import layout
from store.errors import ConfigError
from store.schema import ENVELOPE_NAMES, Stream, stream_columns

# Models and optimizers an open collector has hooks on -> its run id. Weak keys: a
# model that is garbage-collected is forgotten.
_watched: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def check(
    *,
    name: object,
    config: object,
    model: object,
    optimizer: object,
    stats_every: object,
    include: object,
    exclude: object,
    activations_every: object,
    samples_every: object,
    samples_budget_bytes: object,
    module_include: object,
    module_exclude: object,
    nan_check: object,
    overhead_budget: object,
    flush_every_s: object,
    heartbeat_every_s: object,
    resume: object,
    start_step: object,
) -> None:
    """Raise ``ConfigError`` for the first argument ``Collector(...)`` cannot use."""
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"name must be a string or None, got {shown(name)}")
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"config must be a mapping (e.g. a dict), got {type(config).__name__}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    for what, value in (("stats_every", stats_every), ("activations_every", activations_every)):
        if value is None:  # chosen by the overhead budget
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"{what} must be an int >= 0 (0 disables) or None (the overhead budget "
                f"chooses), got {shown(value)}"
            )
    if (
        not isinstance(overhead_budget, int | float)
        or isinstance(overhead_budget, bool)
        or not 0 < overhead_budget < 1
    ):
        raise ConfigError(
            "overhead_budget must be a fraction of step time in (0, 1), e.g. 0.03, "
            f"got {shown(overhead_budget)}"
        )
    for what, value in (
        ("samples_every", samples_every),
        ("samples_budget_bytes", samples_budget_bytes),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{what} must be an int >= 0 (0 disables), got {shown(value)}")
    if not isinstance(nan_check, int) or nan_check < 0:
        raise ConfigError(
            "nan_check must be True, False or an int >= 0 (check every N steps), "
            f"got {shown(nan_check)}"
        )
    for what, value in (("flush_every_s", flush_every_s), ("heartbeat_every_s", heartbeat_every_s)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"{what} must be a positive number of seconds, got {shown(value)}")
    for what, patterns in (
        ("include", include),
        ("exclude", exclude),
        ("module_include", module_include),
        ("module_exclude", module_exclude),
    ):
        _check_patterns(what, patterns)
    if resume is not None and (not isinstance(resume, str) or not layout.RUN_ID_RE.match(resume)):
        raise ConfigError(f"resume must be the id of a run in the store, got {shown(resume)}")
    check_optional_int("start_step", start_step)
    for obj in (model, optimizer):
        if obj is not None and obj in _watched:
            what = "model" if isinstance(obj, torch.nn.Module) else "optimizer"
            raise ConfigError(
                f"this {what} is already watched by the open Collector of run "
                f"{_watched[obj]!r}; close() that one first (two collectors on one "
                f"{what} would record every statistic twice)"
            )


INT64_MAX = 2**63 - 1
"""The largest step or epoch the store can hold (its columns are int64)."""


def check_optional_int(what: str, value: object) -> None:
    """``value`` is None or an int in 0..``INT64_MAX`` (a step, an epoch)."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
        raise ConfigError(
            f"{what} must be an int from 0 to 2**63 - 1 (stored as int64) or None, "
            f"got {shown(value)}"
        )


MAX_WALLTIME_S = 9.2e12
"""The largest wall time (seconds either side of 1970) a microsecond int64 holds."""


def check_wall_time(what: str, value: object) -> None:
    """``value`` is seconds since the epoch that the store can hold."""
    if (
        not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not -MAX_WALLTIME_S <= float(value) <= MAX_WALLTIME_S
    ):
        raise ConfigError(f"{what} must be seconds since the epoch, got {shown(value)}")


_COLUMNS = {s: frozenset(stream_columns(s)) for s in Stream}


def check_record(
    stream: object, columns: object, *, step: object, wall_time: object
) -> tuple[Stream, dict[str, Sequence[Any]]]:
    """``Collector.record()``'s arguments: the stream, and the columns (a new dict)."""
    try:
        target = Stream(stream)
    except (ValueError, TypeError):
        names = ", ".join(s.value for s in Stream)
        raise ConfigError(f"record(): no stream {shown(stream)}; the streams: {names}") from None
    if not isinstance(columns, Mapping):
        raise ConfigError(
            f"record() takes a mapping of column name -> values, got {type(columns).__name__}"
        )
    known, first = _COLUMNS[target], None
    for name, values in columns.items():
        if name not in known:
            own = ", ".join(stream_columns(target))
            hint = " (the step and wall time are record()'s arguments)"
            raise ConfigError(
                f"record(): stream {target.value!r} has no column {shown(name)}"
                f"{hint if name in ENVELOPE_NAMES else ''}; its columns: {own}"
            )
        if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
            raise ConfigError(
                f"record(): column {name!r} must be a sequence of values, one per row, "
                f"got {shown(values)}"
            )
        if first is None:
            first = name
        elif len(values) != len(columns[first]):
            raise ConfigError(
                f"record(): column {name!r} has {len(values)} values, "
                f"column {first!r} has {len(columns[first])}"
            )
    check_optional_int("step", step)
    if wall_time is not None:
        check_wall_time("wall_time", wall_time)
    return target, dict(columns)


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters for a message (never raises: Python
    refuses the repr of an int of more than 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def watch(run_id: str, *objects: object) -> None:
    """Mark ``objects`` (model, optimizer; None skipped) as hooked by run ``run_id``."""
    for obj in objects:
        if obj is not None:
            _watched[obj] = run_id


def unwatch(run_id: str, *objects: object) -> None:
    for obj in objects:
        if obj is not None and _watched.get(obj) == run_id:
            del _watched[obj]


def _check_patterns(what: str, patterns: object) -> None:
    if patterns is None:
        return
    if isinstance(patterns, str) or not isinstance(patterns, list | tuple | set | frozenset):
        raise ConfigError(
            f"{what} must be a list of shell-style name patterns (e.g. [{'*.bias'!r}]), "
            f"got {shown(patterns)}"
        )
    bad = [p for p in patterns if not isinstance(p, str) or not p]
    if bad:
        raise ConfigError(f"{what} patterns must be non-empty strings, got {shown(bad)}")
