"""Which epoch a run's rows carry: where epochs start, or where they end.

Two loop patterns give every row its epoch:

* ``tel.set_epoch(epoch)`` at the start of each epoch: every row recorded from then
  on carries it (the explicit, unambiguous one).
* ``epoch=`` on the ``log()`` at the end of each epoch (the validation log of the
  README's loop): that call's rows carry it, and the rows recorded since the previous
  such call get it when the store is read (``analysis.store``: a row without an epoch
  takes the epoch of the run's next scalar row that has one, at the same or a later
  step; rows after the last take the last + 1, an epoch not finished). So such an
  epoch is not carried forward: the rows of the next epoch are written without one.

Which of the two an ``epoch=`` on ``log()`` is, is told by when it comes: before the
run's first optimizer step it marks a start (carried, as ``set_epoch`` does), after it
an end. One exception: an evaluation before training logged with ``epoch=0`` and then
end-of-epoch logs, whose first repeats the value being carried after training steps:
from there on they are ends. After ``set_epoch`` every ``epoch=`` is carried.
"""

from __future__ import annotations

from collector.output import Output


class Epochs:
    """The epoch policy of one run; ``out.epoch`` is what rows are stamped with."""

    __slots__ = ("_carries", "_explicit", "_last", "_last_step", "_out", "_start_step")

    def __init__(self, out: Output, *, start_step: int) -> None:
        self._out = out
        self._start_step = start_step
        self._explicit = False  # set_epoch() was called: every epoch is carried
        self._carries: bool | None = None  # None until the first epoch= on log()
        self._last: int | None = None
        self._last_step = start_step

    @property
    def current(self) -> int | None:
        """The last epoch given (by ``set_epoch`` or ``log(epoch=)``); None before any."""
        return self._last

    def start(self, epoch: int) -> None:
        """``set_epoch``: rows from now on carry ``epoch``."""
        self._explicit = True
        self._out.epoch = epoch
        self._remember(epoch)

    def given(self, epoch: int) -> None:
        """``log(..., epoch=epoch)``: that call's rows carry ``epoch``; later ones carry it
        too when it marks a start (see the module docstring)."""
        out = self._out
        if self._explicit:
            out.epoch = epoch
        elif self._carries is None:
            self._carries = out.step == self._start_step
        elif self._carries and epoch == out.epoch and out.step > self._last_step:
            self._carries = False  # an evaluation before training, then epoch ends
        if not self._explicit:
            out.epoch = epoch if self._carries else None
        self._remember(epoch)

    def _remember(self, epoch: int) -> None:
        self._last = epoch
        self._last_step = self._out.step
