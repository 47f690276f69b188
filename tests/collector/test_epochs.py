"""Every row gets the epoch it belongs to, whichever loop pattern marks epochs.

The README's loop gives ``epoch=`` only on the validation ``log()`` at each epoch's end;
``tel.set_epoch()`` marks starts. Both must put each training step's rows (scalars,
tensor statistics, system rows) in its own epoch, as the store is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from analysis import open_store
from collector import Collector
from store.errors import ConfigError

STEPS_PER_EPOCH = 4
Loop = Callable[[Collector, int], None]


def _train(root: Path, loop: Loop, epochs: int = 3, *, tail_steps: int = 0) -> None:
    """``epochs`` epochs of ``STEPS_PER_EPOCH`` steps; ``loop(tel, epoch)`` before and
    ``tel.log`` of the training loss after each step; ``tail_steps`` more in an epoch that
    does not finish."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Collector(root, name="r", model=model, optimizer=opt, stats_every=1) as tel:
        loop(tel, -1)  # before training
        for epoch in range(epochs + 1):
            steps = STEPS_PER_EPOCH if epoch < epochs else tail_steps
            if steps:
                loop(tel, 2 * epoch)  # an epoch's start
            for _ in range(steps):
                opt.zero_grad()
                loss = model(torch.randn(8, 3)).pow(2).mean()
                loss.backward()
                opt.step()
                tel.log({"loss": loss}, split="train")
            if epoch < epochs:
                loop(tel, 2 * epoch + 1)  # its end


def _epochs(root: Path) -> dict[str, dict[int, set[int | None]]]:
    """Stream -> step -> the epochs its rows carry, as the store reads them."""
    store = open_store(root)
    out: dict[str, dict[int, set[int | None]]] = {}
    for view, rows in (
        ("scalars", "split = 'train'"),  # the markers' own rows carry what they were given
        ("tensors", "true"),
        ("system", "true"),
    ):
        frame = store.sql(f"SELECT DISTINCT step, epoch FROM {view} WHERE step > 0 AND {rows}")
        by_step: dict[int, set[int | None]] = {}
        for step, epoch in frame.iter_rows():
            by_step.setdefault(step, set()).add(epoch)
        out[view] = by_step
    store.close()
    return out


def _expected(steps: int) -> dict[int, set[int | None]]:
    return {s: {(s - 1) // STEPS_PER_EPOCH} for s in range(1, steps + 1)}


def _end_of_epoch(tel: Collector, when: int) -> None:
    if when >= 0 and when % 2 == 1:  # the README's loop: epoch= on the validation log only
        tel.log({"loss/val": 1.0, "acc/val": 0.5}, epoch=when // 2)


def _set_epoch(tel: Collector, when: int) -> None:
    if when >= 0 and when % 2 == 0:
        tel.set_epoch(when // 2)


def _log_at_start(tel: Collector, when: int) -> None:
    if when >= 0 and when % 2 == 0:
        tel.log({"lr_epoch": 0.1}, epoch=when // 2)


def _eval_first_then_ends(tel: Collector, when: int) -> None:
    if when == -1:  # an evaluation of the untrained model, as epoch 0
        tel.log({"loss/val": 2.0}, epoch=0)
    _end_of_epoch(tel, when)


@pytest.mark.parametrize(
    "loop", [_end_of_epoch, _set_epoch, _log_at_start, _eval_first_then_ends], ids=str
)
def test_every_training_row_carries_its_own_epoch(tmp_path: Path, loop: Loop) -> None:
    _train(tmp_path, loop)
    for view, by_step in _epochs(tmp_path).items():
        assert by_step == _expected(3 * STEPS_PER_EPOCH), view


def test_rows_of_an_unfinished_epoch_get_the_next_epoch(tmp_path: Path) -> None:
    _train(tmp_path, _end_of_epoch, epochs=2, tail_steps=3)
    for view, by_step in _epochs(tmp_path).items():
        assert by_step == _expected(2 * STEPS_PER_EPOCH + 3), view


def test_a_run_that_logs_no_epoch_keeps_null(tmp_path: Path) -> None:
    _train(tmp_path, lambda tel, when: None, epochs=1)
    for view, by_step in _epochs(tmp_path).items():
        assert set().union(*by_step.values()) == {None}, view


def test_the_validation_rows_keep_the_epoch_they_were_given(tmp_path: Path) -> None:
    _train(tmp_path, _end_of_epoch)
    store = open_store(tmp_path)
    val = store.sql("SELECT step, epoch FROM scalars WHERE split = 'val' AND name = 'loss'")
    assert sorted(val.iter_rows()) == [(4, 0), (8, 1), (12, 2)]


def test_epoch_property_is_the_last_epoch_given(tmp_path: Path) -> None:
    seen: list[int | None] = []

    def loop(tel: Collector, when: int) -> None:
        _end_of_epoch(tel, when)
        seen.append(tel.epoch)

    _train(tmp_path, loop, epochs=2)
    assert seen == [None, None, 0, 0, 1]


@pytest.mark.parametrize("bad", [None, -1, 1.5, "2", True])
def test_set_epoch_refuses_what_is_not_an_epoch(tmp_path: Path, bad: object) -> None:
    with Collector(tmp_path, name="r") as tel:
        with pytest.raises(ConfigError, match="epoch"):
            tel.set_epoch(bad)  # type: ignore[arg-type]
        assert tel.epoch is None
