"""HookSet: the one place that registers PyTorch hooks and keeps every handle.

``remove()`` takes off exactly what was added, so a closed collector leaves the
model and optimizer as it found them.
"""

from __future__ import annotations

from typing import Any, Protocol


class _Handle(Protocol):
    def remove(self) -> None: ...


class HookSet:
    def __init__(self) -> None:
        self._handles: list[_Handle] = []

    def add(self, handle: Any) -> None:
        """Keep a handle returned by a ``register_*hook`` call."""
        self._handles.append(handle)

    def __len__(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        """Remove every hook added so far (idempotent)."""
        handles, self._handles = self._handles, []
        for handle in reversed(handles):
            handle.remove()
