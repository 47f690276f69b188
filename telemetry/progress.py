"""Progress of the long verbs (demo training, analyses) on stderr.

On a terminal: a tqdm bar, with status lines printed above it (``say``). Anywhere
else (a pipe, a file, CI logs, tests): no bar; ``say`` lines still go to stderr, so
a log shows what happened without carriage-return noise. ``quiet``: nothing at all.
stdout is left to the verb's result, so ``telemetry analyze ROOT --format json``
stays parseable with or without a bar.

tqdm is imported only when a bar is drawn (~0.1 s; pure Python, no dependencies).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click


class Progress:
    """A bar of ``total`` units (or none: see the module docstring)."""

    def __init__(self, bar: Any | None, *, quiet: bool) -> None:
        self._bar = bar
        self._quiet = quiet

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)

    def describe(self, text: str) -> None:
        """The bar's label (e.g. what is being trained now)."""
        if self._bar is not None:
            self._bar.set_description_str(text)

    def say(self, line: str) -> None:
        """A status line on stderr, above the bar."""
        if self._quiet:
            return
        if self._bar is not None:
            self._bar.write(click.unstyle(line), file=sys.stderr)
        else:
            click.echo(line, err=True)


@contextmanager
def progress(total: int | None, label: str, *, quiet: bool, unit: str = "it") -> Iterator[Progress]:
    """A ``Progress`` for the duration of the block; the bar is removed at the end."""
    if quiet or not _terminal():
        yield Progress(None, quiet=quiet)
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        yield Progress(bar, quiet=quiet)
    finally:
        bar.close()


def _terminal() -> bool:
    return sys.stderr.isatty()
