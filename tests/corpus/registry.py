"""What a corpus run is: a name, what it exercises, its label, and how to train it.

A run's name is ``<group>.<variant>``: the group is the architecture for a healthy run
and the rule it must trigger for a pathological one, so that ``split.py`` can split each
group in halves from the names alone. ``expect`` is empty for a healthy run (it must get
no warning and no error); for a pathological run it lists the rules that must fire, and
``also`` the rules its pathology implies, which may fire with them (a loss that turns NaN
is also a divergence). A ``gap`` run is a classic mistake no rule is designed to see yet:
it expects nothing, and what fires on it is reported (none today: the first one,
validation in training mode, has its rule, ``missing_eval_mode``).
``train`` trains the run into a store and returns its ground truth
(``tests.scenarios.catalogue.Truth``), measured by the test itself: a run whose claims
fail is not what its label says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.scenarios.catalogue import Truth

Train = Callable[[Path], Truth]


@dataclass(frozen=True)
class Run:
    name: str
    what: str
    arch: str
    optimizer: str
    schedule: str
    task: str
    batch: str
    train: Train
    expect: frozenset[str] = frozenset()
    also: frozenset[str] = frozenset()
    level: str = ""  # a pathology's strength: "mild" or "severe"
    gap: str = ""  # a pathology no rule is meant to catch yet: what a rule would look for

    @property
    def healthy(self) -> bool:
        return not self.expect and not self.gap

    @property
    def group(self) -> str:
        return self.name.partition(".")[0]


RUNS: list[Run] = []


def register(run: Run) -> Run:
    if any(r.name == run.name for r in RUNS):
        raise ValueError(f"corpus run {run.name!r} registered twice")
    if "." not in run.name:
        raise ValueError(f"corpus run {run.name!r} is not named <group>.<variant>")
    RUNS.append(run)
    return run


def healthy(
    name: str, *, what: str, arch: str, optimizer: str, schedule: str, task: str, batch: str
) -> Callable[[Train], Train]:
    """Register a healthy run (decorator on its training function)."""

    def decorate(train: Train) -> Train:
        register(Run(name, what, arch, optimizer, schedule, task, batch, train))
        return train

    return decorate


def pathological(
    name: str,
    *,
    expect: tuple[str, ...],
    also: tuple[str, ...] = (),
    level: str,
    what: str,
    arch: str,
    optimizer: str,
    schedule: str = "constant",
    task: str = "digits",
    batch: str,
    gap: str = "",
) -> Callable[[Train], Train]:
    """Register a pathological run that must trigger ``expect`` (decorator); with
    ``gap`` and no ``expect``, a pathology no rule covers (its findings are reported)."""

    def decorate(train: Train) -> Train:
        register(
            Run(
                name,
                what,
                arch,
                optimizer,
                schedule,
                task,
                batch,
                train,
                expect=frozenset(expect),
                also=frozenset(also),
                level=level,
                gap=gap,
            )
        )
        return train

    return decorate
