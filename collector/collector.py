"""The Collector: what a training script attaches to its loop.

Example::

    from collector import Collector

    with Collector("runs", name="digits-cnn", config={"lr": 1e-3},
                   model=model, optimizer=optimizer) as tel:
        for epoch in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()              # hooks record grads, weights, updates, lr, timing
                tel.log({"loss": loss}, split="train")
            tel.log({"loss/val": val_loss, "acc/val": val_acc}, epoch=epoch)

Steps count optimizer steps: after the first ``optimizer.step()`` the step is 1, and
everything recorded for that iteration (statistics, timing, what ``log()`` gets
after the step) carries step 1. Without an optimizer, pass ``step=`` to ``log()``.

A run restarted from a checkpoint continues as a new attempt of the same run::

    tel = Collector("runs", resume=run_id, start_step=checkpoint["step"],
                    model=model, optimizer=optimizer)

One collector per model and optimizer: a second one on the same model or optimizer
while the first is open raises ``ConfigError`` (its hooks would record everything
twice). How a run ends when its process does (exit, exception, SIGTERM, SIGKILL)
is described in ``collector.shutdown``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import torch

from collector import arguments, claims, payload, shutdown
from collector.budget import Overhead
from collector.distributed import placement
from collector.epochs import Epochs
from collector.logged import LogRows, PendingLog
from collector.output import Output
from collector.params import select_parameters
from collector.predictions import PendingPredictions, PredictionRows, reduce
from collector.steps import StepHooks
from collector.stopping import EarlyStopping, EarlyStoppingRule, Stopping, check_on_nonfinite
from store.claims import store_dir
from store.errors import ConfigError
from store.location import RemotePath, StorePath
from store.metrics import GOALS
from store.records import Rows, plain_json, safe_text
from store.schema import EventKind, Stream
from store.writer import Writer

log = logging.getLogger(__name__)


class Collector:
    """Records one training run into the store at ``root``: a directory, or a URL
    (``s3://bucket/prefix``, any fsspec URL; ``store.location``) where every segment
    is one PUT, retried, and counted as dropped if it still fails.

    Arguments that are not obvious:
        stats_every: record per-parameter grad/weight/update statistics every this many
            optimizer steps (1 = every step, 0 = never). None (the default): every step
            for the first ``budget.DENSE_STEPS`` steps, then as often as
            ``overhead_budget`` allows, and every step again for a while when the
            training loss (a metric named ``loss``) jumps or turns NaN (see
            ``collector.budget``); each change is recorded as a ``sampling`` event.
        include, exclude: shell-style patterns on parameter names to watch or skip.
        activations_every: activation statistics of leaf modules every this many steps
            (0 = never; None, the default: chosen by the overhead budget, a quarter as
            often as tensor statistics); see ``collector.activations`` for the exact
            definitions.
        overhead_budget: the share of step time the sampled statistics may take when a
            stride is None (default 3 %). The NaN check (``nan_check``) and the
            per-step rows are outside it: they are paid on every step.
        samples_every, samples_budget_bytes: feature maps of conv layers and the first
            conv layer's filters every this many steps, up to this many bytes per run.
        module_include, module_exclude: shell-style patterns on module names.
        nan_check: find the first module whose output turns NaN/Inf (True = 1, the
            default: exact; False = 0: never). On the CPU (or when ``on_nonfinite``
            reads the gradient norm every step anyway) by replaying the step's forwards
            only when its gradient norm is not finite (``collector.replay``: free on a
            healthy step); elsewhere by checking every step's forward. N > 1 checks
            every N-th step's forward only: cheaper on an accelerator, but an origin
            is reported at the next checked step, when NaN weights may already point at
            the first layer, and a NaN that lasts one step (a bad batch) can be missed.
        on_nonfinite: what the first NaN/Inf training loss or gradient does: "warn"
            (the default: recorded, the origin found, training goes on), "stop"
            (``should_stop`` turns True; the loop checks it and breaks) or "raise"
            (``NonFiniteError`` from that ``log()`` or ``optimizer.step()``). The last two
            read the loss and the gradient norm on the host every step (one
            synchronisation on an accelerator) and flush the store before they act;
            see ``collector.stopping``.
        flush_every_s: at most this many seconds of data are lost if the process dies.
        heartbeat_every_s: how often a live run says so (runs that stop without a final
            event and without heartbeats are reported ``crashed``).
        resume: the id of an existing run to continue, e.g. after a restart from a
            checkpoint: this process appends a new attempt to it (nothing written is
            touched; views keep the latest attempt of each step).
        start_step: the optimizer step to count from (a checkpoint's step). Default: 0,
            or when resuming the last step this rank recorded in the run.

    The rank comes from torch.distributed (or the ``RANK`` variable launchers set);
    see ``collector.distributed`` for how ranks share one run.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | RemotePath,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        stats_every: int | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        activations_every: int | None = None,
        samples_every: int = 100,
        samples_budget_bytes: int = 8 * 2**20,
        module_include: Sequence[str] | None = None,
        module_exclude: Sequence[str] | None = None,
        nan_check: int = 1,
        overhead_budget: float = 0.03,
        flush_every_s: float = 2.0,
        heartbeat_every_s: float = 15.0,
        resume: str | None = None,
        start_step: int | None = None,
        on_nonfinite: str = "warn",
    ) -> None:
        on_nonfinite = check_on_nonfinite(on_nonfinite)
        arguments.check(
            name=name,
            config=config,
            model=model,
            optimizer=optimizer,
            stats_every=stats_every,
            include=include,
            exclude=exclude,
            activations_every=activations_every,
            samples_every=samples_every,
            samples_budget_bytes=samples_budget_bytes,
            module_include=module_include,
            module_exclude=module_exclude,
            nan_check=nan_check,
            overhead_budget=overhead_budget,
            flush_every_s=flush_every_s,
            heartbeat_every_s=heartbeat_every_s,
            resume=resume,
            start_step=start_step,
        )
        watched = select_parameters(model, optimizer, include=include, exclude=exclude)
        # The config as stored, before anything exists on disk: a config that cannot be
        # stored leaves no empty run directory behind.
        stored_config, converted = plain_json(dict(config) if config is not None else {})
        self._root = store_dir(root)
        if name is not None and safe_text(name) != name:
            log.warning(
                "run name %s is not valid Unicode (lone surrogates, as os.fsdecode gives for "
                "a non-UTF-8 path); stored with them escaped: %r",
                ascii(name),
                safe_text(name),
            )
        where = placement()
        place = claims.claim(self._root, where, name=name, resume=resume)
        self._run_id, self._run_dir = place.run_id, place.run_dir
        if start_step is None:  # resumed: where this rank stopped; fresh: 0
            start_step = place.last_step
        self._model = model
        self._optimizer = optimizer
        self._closed = False
        self._writer = Writer(
            self._root,
            self._run_id,
            rank=where.rank,
            attempt=place.attempt,
            flush_every_s=flush_every_s,
            heartbeat_every_s=heartbeat_every_s,
        )
        self._out = Output(self._writer, step=start_step)
        self._epochs = Epochs(self._out, start_step=start_step)
        self._overhead = Overhead()  # the collector's own time in the step being timed
        self._steps = StepHooks(
            self._out,
            self._overhead,
            model=model,
            optimizer=optimizer,
            watched=watched,
            placement=where,
            stats_every=stats_every,
            activations_every=activations_every,
            samples_every=samples_every,
            samples_budget_bytes=samples_budget_bytes,
            module_include=module_include,
            module_exclude=module_exclude,
            nan_check=int(nan_check),
            overhead_budget=overhead_budget,
            on_synchronised=self._on_synchronised,
            on_gradients=self._on_gradients if on_nonfinite != "warn" else None,
        )
        watch_loss = self._steps.watch_loss if self._steps.budget is not None else None
        self._rows = self._steps.rows
        self._logged = LogRows(self._run_id, self._rows.logged, watch_loss)
        self._predictions = PredictionRows(self._writer)
        self._stopping = Stopping(
            self._out, on_nonfinite, origin_now=self._steps.origin_now, flush=self._flush_rows
        )
        if self._stopping.watching:
            self._logged.on_values = self._stopping.on_logged
        try:
            if converted:
                listed = ", ".join(converted[:8]) + (", ..." if len(converted) > 8 else "")
                log.warning(
                    "run %s: config values that are not JSON were stored as their repr(): %s",
                    self._run_id,
                    listed,
                )
            started = payload.run_started(
                name=name,
                config=stored_config,
                placement=where,
                attempt=self._writer.attempt,
                resumed=resume is not None,
                start_step=start_step,
                device=self._steps.device,
                model=model,
                optimizer=optimizer,
                watched=watched,
                sampling=self._steps.sampling_start(),
            )
            self._out.event(EventKind.RUN_STARTED, started)
            self._steps.attach()
        except BaseException:
            self._steps.remove_hooks()
            self._writer.close()
            raise
        # On disk before training starts (one write, a few ms): a run killed in its
        # first seconds still exists, with a status, instead of an empty directory.
        self._writer.flush(timeout=1.0)  # a hung disk costs start-up 1 s, never more
        arguments.watch(self._run_id, model, optimizer)
        shutdown.register(self)

    # -- public face -------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def run_dir(self) -> StorePath:
        return self._run_dir

    @property
    def rank(self) -> int:
        return self._writer.rank

    @property
    def attempt(self) -> int:
        """0 for a fresh run, then 1, 2... for each ``resume`` of this rank."""
        return self._writer.attempt

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (or, without an optimizer, the largest ``step=``
        given to ``log()`` or ``record()``)."""
        return self._out.step

    @property
    def epoch(self) -> int | None:
        """The last epoch given, by ``set_epoch()`` or ``log(epoch=)`` (None before any)."""
        return self._epochs.current

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: every row recorded from now on carries it.

        Call it at the top of the epoch loop. Without it, ``epoch=`` on the log at the
        end of each epoch (the validation log) is enough: the rows recorded since the
        previous one get that epoch when the store is read (``collector.epochs``).
        """
        if epoch is None:
            raise ConfigError("set_epoch() takes an int from 0 to 2**63 - 1, got None")
        arguments.check_optional_int("epoch", epoch)
        self._epochs.start(epoch)

    @property
    def model(self) -> torch.nn.Module | None:
        """The model this collector hooks (None without one)."""
        return self._model

    @property
    def rows_dropped(self) -> int:
        """Rows the writer could not store (queue full or I/O errors) so far."""
        return self._writer.rows_dropped

    def log(
        self,
        metrics: Mapping[str, float | int | torch.Tensor],
        *,
        split: str | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        """Record scalar values. ``{"loss/val": x}`` means name ``loss``, split ``val``.

        Tensor values on the CPU are read at once. Tensor values on an accelerator are
        kept there and moved to the host in batches (every ``LOG_BATCH`` calls, at a
        sampled step, which synchronises anyway, and at ``flush()``/``close()``): no
        host synchronisation per step. Their rows keep the step, epoch and time of the
        call; a loss jump in them starts a dense burst when the batch is read.
        """
        split = self._logged.check(metrics, split=split, epoch=epoch, step=step)
        if self._closed:
            log.warning("log() on closed run %s ignored", self._run_id)
            return
        stopping = self._stopping
        stopping.raise_if_tripped()  # tripped since the last call (collector.stopping)
        start = time.perf_counter()
        names, splits, values, tensors = self._logged.parse(metrics, split)
        row_step, row_epoch = self._given(step, epoch)
        if tensors:  # values kept on an accelerator, read in batches
            entry = PendingLog(row_step, row_epoch, time.time(), names, splits, values)
            full = self._logged.keep(entry, tensors)
            if full or (stopping.watching and stopping.wants_now(names, splits)):
                start += self._logged.read()
        else:
            self._logged.record_values((row_step, row_epoch, time.time(), names, splits, values))
        self._overhead.every_step(time.perf_counter() - start)
        stopping.raise_if_tripped()

    def log_predictions(
        self,
        targets: torch.Tensor | Any,
        outputs: torch.Tensor | Any,
        *,
        split: str = "val",
        step: int | None = None,
        epoch: int | None = None,
    ) -> None:
        """Record what the model predicted against ``targets``, for the confusion matrix
        (classification) or the residuals (regression): call it on each evaluation batch
        (the calls of one split at one step add up), and on training batches with
        ``split="train"`` to show the training labels' distribution.

        Integer targets are class ids: ``outputs`` are then class ids of the same shape
        or scores (logits) with the classes at dimension 1 or last, whose argmax is taken
        on their device. Floating-point targets are regression: ``outputs`` hold as many
        values. Tensors on an accelerator are read in batches, as ``log()``'s values
        are (see ``collector.predictions``). Shapes that do not fit raise
        ``ConfigError`` naming them; nothing is recorded then.
        """
        if not isinstance(split, str) or not split:
            raise ConfigError(f"split must be a non-empty string, got {arguments.shown(split)}")
        arguments.check_optional_int("epoch", epoch)
        arguments.check_optional_int("step", step)
        start = time.perf_counter()  # the reduction is the collector's time too
        kind, kept, classes, count = reduce(targets, outputs, split=split)
        if self._closed:
            log.warning("log_predictions() on closed run %s ignored", self._run_id)
            return
        if count == 0:
            return
        row_step, row_epoch = self._given(step, epoch)
        entry = PendingPredictions(
            self._logged.valid_unicode(split),
            row_step,
            row_epoch,
            time.time(),
            kind,
            kept,
            classes,
            count,
        )
        if self._predictions.add(entry):
            start += self._predictions.read()
        self._overhead.every_step(time.perf_counter() - start)

    @property
    def should_stop(self) -> bool:
        """True once the loop should end: the NaN guard tripped under
        ``on_nonfinite="stop"``, or early stopping ran out of patience."""
        return self._stopping.should_stop

    @property
    def is_best(self) -> bool:
        """True right after a logged value of the early-stopping metric that is the
        best so far (save the checkpoint then), until that metric's next value; False
        before ``early_stopping()``."""
        return self._stopping.is_best

    def early_stopping(
        self,
        metric: str = "loss/val",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
    ) -> None:
        """Watch ``metric`` (as given to ``log()``): ``should_stop`` turns True after
        ``patience`` logged values in a row that do not improve on the best by more than
        ``min_delta`` (lower for ``mode="min"``, higher for ``"max"``), and ``is_best``
        is True right after one that does. Each new best and the stop are recorded as
        ``best`` and ``stop`` events. Calling it again re-arms it from scratch."""
        rule = EarlyStoppingRule.of(metric, patience, min_delta, mode)
        self._stopping.early = EarlyStopping(rule)
        self._logged.on_values = self._stopping.on_logged

    def define_metric(self, name: str, *, goal: str) -> None:
        """Say which way metric ``name`` improves: ``goal="min"`` (a loss) or ``"max"``.

        ``name`` as given to ``log()``: ``"bpc"`` or ``"bpc/val"`` (the part before the
        last ``/``; a goal holds for every split). Stored as a ``metric_defined`` event;
        the report's best values, ``telemetry runs``' best columns, the run comparison
        and the rules follow it. Without it, the name's words decide (``store.metrics``:
        loss, nll, ppl, bpc, mse, rmse, mae... fall; acc, f1, auc, r2, precision,
        recall... rise). A bad name or goal raises ``ConfigError``.
        """
        if not isinstance(name, str) or not name or name.endswith("/"):
            raise ConfigError(f"define_metric() takes a metric name, got {arguments.shown(name)}")
        if goal not in GOALS:
            raise ConfigError(
                f"define_metric({name!r}): goal must be one of {list(GOALS)}, "
                f"got {arguments.shown(goal)}"
            )
        metric = name.rpartition("/")[0] or name
        if self._closed:
            log.warning("define_metric() on closed run %s ignored", self._run_id)
            return
        self._out.event(
            EventKind.METRIC_DEFINED,
            {"name": self._logged.valid_unicode(metric), "goal": goal},
            essential=True,
        )

    def record(
        self,
        stream: Stream | str,
        columns: Mapping[str, Sequence[Any]],
        *,
        step: int | None = None,
        wall_time: float | None = None,
        essential: bool = False,
    ) -> None:
        """Append whole rows to one stream of this run: the sink for what ``log()``
        does not cover, e.g. ``tel.record("scalars", {"name": ["acc"], "split": ["val"],
        "value": [0.91]}, step=100)``.

        ``stream`` is a ``Stream`` or its name. ``columns`` maps column names of that
        stream (``store.schema.stream_columns``) to one value per row, all of the same
        length; columns left out are null. The rows get ``step`` (default: the current
        step), ``wall_time`` (seconds since the epoch; default: now) and the current
        epoch. Without an optimizer, a ``step`` past the current one advances it, as
        ``log(step=...)`` does; with one, optimizer steps count and ``step`` only labels
        these rows. ``essential`` rows are queued even when the writer's queue is full
        (for the rare rows a run must not lose, like lifecycle events).

        Like ``log()``, it never blocks: the values are converted when the writer
        flushes (do not change them after the call), and a batch with a value its
        column's type cannot hold is dropped there alone (counted in ``rows_dropped``).
        An unknown stream or column, columns of different lengths, or a bad ``step`` or
        ``wall_time`` raise ``ConfigError`` naming it, and nothing is recorded (rows
        recorded before are untouched). On a closed collector: a warning, and nothing.
        """
        target, checked = arguments.check_record(stream, columns, step=step, wall_time=wall_time)
        if self._closed:
            log.warning("record() on closed run %s ignored (%s rows)", self._run_id, target)
            return
        out = self._out
        if step is None:
            step = out.step
        elif self._optimizer is None:  # with one, optimizer steps count
            out.step = max(out.step, step)
        when = time.time() if wall_time is None else float(wall_time)
        self._rows.hand_over()  # rows logged before these stay before them
        self._writer.put(Rows(target, step, out.epoch, when, checked), essential=essential)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Publish everything recorded so far (blocks until written or ``timeout``)."""
        if self._logged.pending:
            self._logged.read()
        self._predictions.read()
        self._rows.hand_over()
        return self._writer.flush(timeout)

    def close(self, *, error: BaseException | None = None, compact: bool = True) -> None:
        """End the run: remove hooks, record how it ended, drain, compact. Idempotent.

        ``compact=False`` leaves the segments as written (a process that must exit
        fast, e.g. on SIGTERM): readers read them as they are, compaction only saves
        them opening many small files (there is no separate compaction verb).
        """
        if self._closed:
            return
        self._closed = True
        self._steps.remove_hooks()
        arguments.unwatch(self._run_id, self._model, self._optimizer)
        self._steps.write_summary()  # if no optimizer step came after the first forward
        for read in (self._logged.read, self._predictions.read, self._rows.hand_over):
            try:
                read()
            except Exception as e:  # a broken device must not cost the run its ending
                log.warning("run %s: could not read values from the device: %s", self._run_id, e)
        try:
            self._steps.record_last_origin()  # the last, unread steps
        except Exception as e:  # never lose the run's ending over a diagnostic
            log.warning("NaN origin check failed at close: %s", e)
        shutdown.unregister(self)
        ending = {"steps": self._out.step, "rows_dropped": self._writer.rows_dropped}
        ending |= self._steps.health()  # hook failures, inference forwards
        if error is None:
            self._out.event(EventKind.RUN_FINISHED, ending)
        else:
            failed = {"type": type(error).__name__, "message": str(error)[:2000]}
            self._out.event(EventKind.RUN_FAILED, failed | ending)
        self._out.seal(self._run_dir, compact=compact)

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(error=exc)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Collector(run_id={self._run_id!r}, step={self._out.step}, {state})"

    # -- internals ---------------------------------------------------------------------

    def _given(self, step: int | None, epoch: int | None) -> tuple[int, int | None]:
        """The step and epoch of rows given ``step=``/``epoch=`` (or not): without an
        optimizer a later ``step`` advances the run's; an ``epoch`` marks the epoch."""
        out = self._out
        if step is None and epoch is None:
            return out.step, out.epoch
        if step is not None and self._optimizer is None:
            out.step = max(out.step, step)
        if epoch is not None:
            self._epochs.given(epoch)
        return (out.step if step is None else step), (out.epoch if epoch is None else epoch)

    def _on_gradients(self, norm: torch.Tensor | None, step: int) -> None:
        self._stopping.on_gradients(norm, step)

    def _flush_rows(self) -> None:
        """Every row recorded so far on disk (the NaN guard, before it acts)."""
        self._rows.hand_over()
        self._writer.flush(timeout=30.0)

    def _on_synchronised(self) -> None:
        """A sampled step synchronised the device: read the ``log()`` values and the
        predictions waiting there."""
        if self._logged.pending:
            self._logged.read()
        self._predictions.read()
