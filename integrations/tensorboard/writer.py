"""A drop-in for ``torch.utils.tensorboard.SummaryWriter`` that writes into the store.

Change one import and the same calls land in this package's store, where
``telemetry analyze`` diagnoses them and ``telemetry report`` draws them::

    from integrations.tensorboard import SummaryWriter  # was: from torch.utils.tensorboard

    with SummaryWriter("runs/mnist-lr0.1") as writer:
        for step in range(1, 101):
            ...
            writer.add_scalar("Loss/train", loss.item(), step)
            writer.add_histogram("fc1.weight.grad", model.fc1.weight.grad, step)
        writer.add_scalar("Loss/val", val_loss, step)
        writer.add_hparams({"lr": 0.1}, {"hparam/accuracy": acc})

Where things go (the tag conventions are in ``integrations.tensorboard.tags``):

=====================  ==================================================================
``log_dir``            ``<parent>/<name>``: the store is the parent, the run is named
                       ``<name><comment>``; ``log_dir`` then reads back as the run's
                       directory. None: store ``runs``, name from ``comment``.
``add_scalar(s)``      ``scalars``: ``Loss/train`` -> name loss, split train;
                       ``Accuracy/val`` -> acc, val (the rules' names);
                       ``add_scalars("loss", {"train": a, "val": b})`` -> two splits.
                       A tag stored under another spelling is kept once, at its first
                       use, in a ``config`` event ``{"tensorboard_tags": {tag: [name,
                       split]}}`` (for ``add_scalars``, the tag ``main_tag/key``).
``add_histogram``      ``tensors`` (numel, norm, mean, std, min, max, abs_max, zero_frac,
                       nonfinite; ``fc1.weight.grad`` -> param fc1.weight, kind grad) and
                       exact quantiles as ``scalars`` rows (``.histograms``).
``add_histogram_raw``  the same, from the buckets (zero_frac and nonfinite null).
``add_image(s)``,      ``samples``: module = tag, what ``image``, ``[channels, H, W]``
``add_figure``         bytes scaled like TensorBoard (floats in [0, 1] times 255).
``add_graph``          ``modules``: the model summary (shapes from ``input_to_model``).
``add_hparams``        a ``config`` event ``{"config": hparams, "metrics": metrics}`` and
                       the metrics as scalars.
``add_text``           a ``note`` event ``{"tag": tag, "text": text}``.
=====================  ==================================================================

``global_step`` is the row's step; left out, it is the run's current step (optimizer
steps when an ``optimizer`` is given, else the largest step written so far).
``walltime`` (seconds since the epoch) is the row's ``wall_time``. ``max_queue``,
``filename_suffix`` and ``bins`` are accepted and ignored (there is no event file);
``flush_secs`` caps the collector's flush interval (2 s by default, the most a crash
loses). Keyword-only extras: ``root`` and ``name`` (instead of ``log_dir``),
``config``, ``model`` and ``optimizer`` (the collector's own hooks then record
gradients, weights, activations and timing too) and any other ``Collector``
option. Methods without an equivalent raise ``UnsupportedError`` naming what to use.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from collector.arguments import INT64_MAX, check_wall_time, shown
from collector.collector import Collector
from collector.modules import ModelSummary
from collector.stats import reduce, to_host
from integrations.tensorboard.histograms import (
    QUANTILE_BPS,
    Histogram,
    bucket_quantiles,
    quantile_columns,
    statistics,
)
from integrations.tensorboard.images import image_maps, render_figure
from integrations.tensorboard.tags import histogram_key, metric_key, scalars_key
from store.errors import ConfigError, TelemetryError
from store.records import json_safe, plain_json
from store.schema import EventKind, Stream

log = logging.getLogger(__name__)

DEFAULT_ROOT = "runs"
"""The store when ``log_dir`` is None (TensorBoard's default parent directory too)."""


class UnsupportedError(TelemetryError, NotImplementedError):
    """A ``SummaryWriter`` method this store has no equivalent for; the message says what to use."""


class SummaryWriter:
    """``torch.utils.tensorboard.SummaryWriter``'s interface over a ``Collector`` run."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
        *,
        root: str | os.PathLike[str] | None = None,
        name: str | None = None,
        **collector_options: Any,
    ) -> None:
        if purge_step is not None:
            raise UnsupportedError(
                "purge_step: the store never deletes rows; to continue a run from a "
                "checkpoint use Collector(root, resume=<run id>, start_step=<step>), whose "
                "newer attempt replaces the replayed steps in every view"
            )
        if not isinstance(flush_secs, int | float) or flush_secs <= 0:
            raise ConfigError(f"flush_secs must be a positive number, got {flush_secs!r}")
        store, run_name = _placement(log_dir, comment, root=root, name=name)
        collector_options.setdefault("flush_every_s", min(float(flush_secs), 2.0))
        self._run = Collector(store, run_name, **collector_options)
        self._tags: dict[str, tuple[str, str | None]] = {}

    # -- where ------------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        """The run's directory in the store."""
        return str(self._run.run_dir)

    def get_logdir(self) -> str:
        return self.log_dir

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def collector(self) -> Collector:
        """The underlying run, for ``log()`` and everything else the collector does."""
        return self._run

    # -- scalars -----------------------------------------------------------------------

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """One value: ``Loss/train`` is name ``loss``, split ``train`` (see ``.tags``)."""
        value = _number(scalar_value, what=f"add_scalar({tag!r})")
        name, split = self._metric(tag, metric_key, tag)
        self._scalars([name], [split], [value], global_step, walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Several splits of one metric: ``add_scalars("loss", {"train": a, "val": b})``."""
        if not isinstance(main_tag, str) or not main_tag.strip("/"):
            raise ConfigError(f"add_scalars: main_tag must be a non-empty string, got {main_tag!r}")
        if not isinstance(tag_scalar_dict, Mapping) or not tag_scalar_dict:
            raise ConfigError(
                f"add_scalars({main_tag!r}): tag_scalar_dict must be a non-empty mapping of "
                f"split -> value, got {tag_scalar_dict!r}"
            )
        for key in tag_scalar_dict:
            if not isinstance(key, str) or not key.strip("/"):
                raise ConfigError(
                    f"add_scalars({main_tag!r}): keys must be non-empty strings, got {key!r}"
                )
        values = [_number(v, what=f"add_scalars({main_tag!r})") for v in tag_scalar_dict.values()]
        keys = [
            self._metric(f"{main_tag.strip('/')}/{key.strip('/')}", scalars_key, main_tag, key)
            for key in tag_scalar_dict
        ]
        names, splits = [k[0] for k in keys], [k[1] for k in keys]
        self._scalars(names, splits, values, global_step, walltime)

    def _metric(self, tag: str, fn: Callable[..., Any], *args: Any) -> tuple[str, str | None]:
        """``(name, split)`` of ``tag``; the first time a tag is stored under another
        spelling (``Accuracy/val`` as acc, val), a ``config`` event keeps the original.
        ``fn(*args)`` maps it (``metric_key`` or ``scalars_key``)."""
        key = self._tags.get(tag) if isinstance(tag, str) else None
        if key is None:
            key = self._tags[tag] = _key(fn, *args)
            if "/".join(k for k in key if k is not None) != tag:
                payload = json.dumps({"tensorboard_tags": {tag: list(key)}})
                columns = {"kind": [EventKind.CONFIG.value], "payload": [payload]}
                self._record(Stream.EVENTS, columns, None, None, essential=True)
        return key

    def _scalars(
        self,
        names: Sequence[str],
        splits: Sequence[str | None],
        values: Sequence[float],
        global_step: int | None,
        walltime: float | None,
    ) -> None:
        columns: dict[str, Sequence[Any]] = {"name": names, "split": splits, "value": values}
        self._record(Stream.SCALARS, columns, global_step, walltime)

    # -- histograms --------------------------------------------------------------------

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: int | None = None,
        bins: Any = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """Statistics of ``values`` (``tensors`` row) and its exact quantiles (``scalars``)."""
        param, kind = _key(histogram_key, tag, parameter=isinstance(values, torch.nn.Parameter))
        x = _tensor(values, what=f"add_histogram({tag!r})").detach().reshape(-1)
        if not x.numel():
            raise ConfigError(f"add_histogram({tag!r}): the values are empty")
        x = x.double() if x.dtype == torch.float64 else x.float()
        [stats] = to_host([reduce([x])])[0].rows()
        quantiles = _quantiles(x)
        step = self._global_step(global_step)
        row = {"param": [param], "kind": [kind], **{k: [v] for k, v in stats.items()}}
        self._record(Stream.TENSORS, row, step, walltime)
        self._record(Stream.SCALARS, quantile_columns(tag, quantiles), step, walltime)

    def add_histogram_raw(
        self,
        tag: str,
        min: float,
        max: float,
        num: float,
        sum: float,
        sum_squares: float,
        bucket_limits: Sequence[float],
        bucket_counts: Sequence[float],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """A histogram you binned yourself: statistics and interpolated quantiles."""
        limits, counts = list(bucket_limits), list(bucket_counts)
        if len(limits) != len(counts) or not limits:
            raise ConfigError(
                f"add_histogram_raw({tag!r}): bucket_limits ({len(limits)}) and bucket_counts "
                f"({len(counts)}) must be non-empty and of the same length"
            )
        param, kind = _key(histogram_key, tag)
        h = Histogram(min, max, num, sum, sum_squares, limits, counts)
        step = self._global_step(global_step)
        row = {"param": [param], "kind": [kind], **{k: [v] for k, v in statistics(h).items()}}
        self._record(Stream.TENSORS, row, step, walltime)
        self._record(Stream.SCALARS, quantile_columns(tag, bucket_quantiles(h)), step, walltime)

    # -- images, figures, graph ---------------------------------------------------------

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
    ) -> None:
        """One image (``CHW``, ``HWC`` or ``HW``; floats in [0, 1] or uint8)."""
        self._image(tag, img_tensor, global_step, walltime, dataformats, batch=False)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "NCHW",
    ) -> None:
        """A batch of images, stored as one sample of ``N x C`` maps."""
        self._image(tag, img_tensor, global_step, walltime, dataformats, batch=True)

    def add_figure(
        self,
        tag: str,
        figure: Any,
        global_step: int | None = None,
        close: bool = True,
        walltime: float | None = None,
    ) -> None:
        """A matplotlib figure (or a list of them), rendered to RGB and stored as an image."""
        figures = list(figure) if isinstance(figure, list | tuple) else [figure]
        images = [render_figure(f, close=close) for f in figures]
        if len(images) == 1:
            self._image(tag, images[0], global_step, walltime, "HWC", batch=False)
        else:
            sizes = {tuple(i.shape) for i in images}
            if len(sizes) > 1:
                raise ConfigError(f"add_figure({tag!r}): figures of different sizes {sizes}")
            self._image(tag, torch.stack(images), global_step, walltime, "NHWC", batch=True)

    def _image(
        self,
        tag: str,
        img: Any,
        global_step: int | None,
        walltime: float | None,
        dataformats: str,
        *,
        batch: bool,
    ) -> None:
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"an image tag must be a non-empty string, got {tag!r}")
        maps = image_maps(_tensor(img, what=f"image {tag!r}"), dataformats, batch=batch, tag=tag)
        n = int(maps.shape[0])
        columns: dict[str, Sequence[Any]] = {
            "module": [tag],
            "what": ["image"],
            "shape": [list(maps.shape)],
            "dtype": ["uint8"],
            "data": [maps.contiguous().numpy().tobytes()],
            "lo": [[0.0] * n],
            "hi": [[1.0] * n],
        }
        self._record(Stream.SAMPLES, columns, self._global_step(global_step), walltime)

    def add_graph(
        self,
        model: torch.nn.Module,
        input_to_model: Any = None,
        verbose: bool = False,
        use_strict_trace: bool = True,
    ) -> None:
        """The model summary (``modules``): one forward of ``input_to_model`` gives shapes.

        The forward runs without gradients in the model's current mode, as TensorBoard's
        trace does. Without ``input_to_model`` the summary has parameters but no shapes.
        """
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"add_graph: model must be a torch.nn.Module, got {type(model)}")
        if self._run.model is model:
            log.info("add_graph: the collector records this model's summary itself; skipped")
            return
        summary = ModelSummary(model, training_only=False)
        if input_to_model is not None:
            args = (
                tuple(input_to_model)
                if isinstance(input_to_model, list | tuple)
                else (input_to_model,)
            )
            summary.attach(lambda name: lambda fn: fn)
            try:
                with torch.no_grad():
                    model(*args)
            except Exception as e:
                raise ConfigError(
                    f"add_graph: the model's forward on input_to_model failed: {e}"
                ) from e
            finally:
                summary.detach()
        self._record(Stream.MODULES, summary.rows(), self._global_step(None), None)

    # -- hparams, text -------------------------------------------------------------------

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, Sequence[Any]] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """Hyperparameters as a ``config`` event; the metrics also as scalars of this run.

        TensorBoard writes them to a new sub-run (``run_name``); here they belong to this
        writer's run, so ``run_name`` is refused. ``hparam_domain_discrete`` only shapes
        TensorBoard's UI and is ignored.
        """
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise ConfigError("add_hparams: hparam_dict and metric_dict must be dicts")
        if run_name is not None:
            raise UnsupportedError(
                "add_hparams(run_name=...): hparams belong to this writer's run; for a "
                "sweep, open one SummaryWriter per run (each is a run in the store)"
            )
        config, converted = plain_json(dict(hparam_dict), "hparams")
        if converted:
            log.warning("add_hparams: values stored as their repr(): %s", ", ".join(converted))
        metrics = {
            str(k): _number(v, what=f"add_hparams metric {k!r}") for k, v in metric_dict.items()
        }
        step = self._global_step(global_step)
        payload = json.dumps(json_safe({"config": config, "metrics": metrics}), allow_nan=False)
        columns = {"kind": [EventKind.CONFIG.value], "payload": [payload]}
        self._record(Stream.EVENTS, columns, step, None, essential=True)
        if metrics:
            keys = [self._metric(tag, metric_key, tag) for tag in metrics]
            names, splits = [k[0] for k in keys], [k[1] for k in keys]
            self._scalars(names, splits, list(metrics.values()), step, None)

    def add_text(
        self,
        tag: str,
        text_string: str,
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """A ``note`` event with payload ``{"tag": tag, "text": text_string}``."""
        if not isinstance(tag, str) or not isinstance(text_string, str):
            raise ConfigError(f"add_text: tag and text_string must be strings, got {tag!r}")
        payload = json.dumps({"tag": tag, "text": text_string})
        columns = {"kind": [EventKind.NOTE.value], "payload": [payload]}
        self._record(
            Stream.EVENTS, columns, self._global_step(global_step), walltime, essential=True
        )

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self) -> None:
        self._run.flush()

    def close(self) -> None:
        self._run.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._run.close(error=exc)

    def __repr__(self) -> str:
        return f"SummaryWriter(log_dir={self.log_dir!r})"

    # -- internals ----------------------------------------------------------------------

    def _global_step(self, global_step: int | None) -> int:
        if global_step is None:
            return self._run.step
        if isinstance(global_step, torch.Tensor) and global_step.numel() == 1:
            # A step counter kept as a tensor (rare, usually on the CPU): read once per
            # call, as torch.utils.tensorboard does; the step must be known to file the row.
            global_step = int(global_step.item())
        if not isinstance(global_step, numbers.Integral) or isinstance(global_step, bool):
            raise ConfigError(f"global_step must be an int, got {global_step!r}")
        if not 0 <= global_step <= INT64_MAX:
            raise ConfigError(
                f"global_step must be an int from 0 to 2**63 - 1 (stored as int64), "
                f"got {shown(global_step)}"
            )
        return int(global_step)

    def _record(
        self,
        stream: Stream,
        columns: Mapping[str, Sequence[Any]],
        global_step: int | None,
        walltime: float | None,
        *,
        essential: bool = False,
    ) -> None:
        if walltime is not None:
            check_wall_time("walltime", walltime)
        self._run.record(
            stream,
            columns,
            step=self._global_step(global_step),
            wall_time=time.time() if walltime is None else float(walltime),
            essential=essential,
        )


def _unsupported(method: str, instead: str) -> Any:
    def refuse(self: SummaryWriter, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError(f"SummaryWriter.{method} has no equivalent in the store: {instead}")

    refuse.__name__ = refuse.__qualname__ = method
    refuse.__doc__ = f"Not supported: {instead}"
    return refuse


_UNSUPPORTED = {
    "add_tensor": "use add_histogram (statistics and quantiles) or add_scalar",
    "add_image_with_boxes": "use add_image (the boxes are not drawn)",
    "add_video": "use add_images with the frames you want to keep",
    "add_audio": "save the audio file under writer.log_dir",
    "add_embedding": "save the embedding (torch.save) under writer.log_dir",
    "add_pr_curve": "log precision and recall at chosen thresholds with add_scalars",
    "add_pr_curve_raw": "log precision and recall at chosen thresholds with add_scalars",
    "add_custom_scalars": "the report lays out its charts; add_scalars puts splits on one chart",
    "add_custom_scalars_multilinechart": "add_scalars puts several lines on one chart",
    "add_custom_scalars_marginchart": "add_scalars puts several lines on one chart",
    "add_mesh": "save the mesh under writer.log_dir",
    "add_onnx_graph": "use add_graph(model, input) for the module summary",
}
for _method, _instead in _UNSUPPORTED.items():
    setattr(SummaryWriter, _method, _unsupported(_method, _instead))


def _placement(
    log_dir: str | os.PathLike[str] | None,
    comment: str,
    *,
    root: str | os.PathLike[str] | None,
    name: str | None,
) -> tuple[Path, str | None]:
    """(store, run name) from TensorBoard's ``log_dir`` and ``comment`` or our ``root``/``name``."""
    if not isinstance(comment, str):
        raise ConfigError(f"comment must be a string, got {comment!r}")
    if log_dir is not None and root is not None:
        raise ConfigError("pass log_dir or root, not both (root is the store, log_dir a run in it)")
    if log_dir is None:
        store = Path(root) if root is not None else Path(DEFAULT_ROOT)
        base = name
    else:
        path = Path(log_dir)
        if not path.name:
            raise ConfigError(f"log_dir {str(log_dir)!r} has no last component to name the run")
        store, base = path.parent, name or path.name
    full = f"{base or ''}{comment}".strip("_- ") or None
    return store, full


def _key(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _number(value: Any, *, what: str) -> float:
    """A real number from a Python/numpy number or a one-element tensor/array."""
    if isinstance(value, bool | str):
        raise ConfigError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "numel") or hasattr(value, "size"):
        size = value.numel() if hasattr(value, "numel") else value.size
        if size == 1 and hasattr(value, "item"):
            # One device sync per call, as torch.utils.tensorboard's own add_scalar does
            # (drop-in semantics); Collector.log() batches device values instead.
            item = value.item()
            if isinstance(item, numbers.Real) and not isinstance(item, bool):
                return float(item)
    raise ConfigError(f"{what}: expected a number or a one-element tensor, got {value!r}")


def _tensor(value: Any, *, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(f"{what}: expected a tensor, array or list of numbers: {e}") from e
    if t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(f"{what}: {t.dtype} values; pass real numbers")
    return t


def _quantiles(x: torch.Tensor) -> list[float]:
    """Exact quantiles of the finite values (linear between order statistics, numpy's default)."""
    finite = x[torch.isfinite(x)]
    if not finite.numel():
        return [math.nan] * len(QUANTILE_BPS)
    ordered = finite.double().sort().values
    pos = torch.tensor(QUANTILE_BPS, dtype=torch.float64) / 10000 * (ordered.numel() - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=ordered.numel() - 1)
    values = ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])
    return [float(v) for v in values.tolist()]
