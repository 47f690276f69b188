"""TensorBoard event files into a store: what ``telemetry import tensorboard`` does.

Every directory under LOGDIR that holds event files (``events.out.tfevents.*``) is
one TensorBoard run and becomes one run of the store, named after its path under
LOGDIR, except the sub-runs torch's ``SummaryWriter`` splits a run into
(``add_scalars``' one directory per key, ``add_hparams``' timestamped one): those are
imported into their parent run (``integrations.tensorboard.subruns``). The files are
read with the ``tensorboard`` package's own reader (``EventAccumulator``, keeping every
event: no reservoir sampling), so what is imported is what TensorBoard itself would show:

* scalars (``add_scalar``, either wire format) -> ``scalars``, the tag mapped to
  name and split as ``integrations.tensorboard.tags`` says (``Loss/train`` -> loss,
  train; ``Accuracy/val`` -> acc, val; ``add_scalars("loss", {"val": v})``'s sub-run
  ``loss_val`` -> loss, val); a tag stored under another spelling is kept in the
  ``run_started`` payload, ``tensorboard_tags``: ``{"Accuracy/val": ["acc", "val"]}``;
* hparams (``add_hparams``, the hparams plugin's session start) -> the run's
  ``config``; their metrics (``hparam/accuracy``) are scalars like any other;
* histograms -> one ``tensors`` row each (numel, norm, mean, std, min, max, abs_max,
  exact from the histogram's sums) and the quantile rows of ``integrations.tensorboard.histograms``;
* text -> ``note`` events.

Rows keep their event's step and wall time; the run gets a ``run_started`` event at
its first event (payload: ``source``, ``imported_from``, ``subruns``: the sub-run
directories merged, relative to it) and a ``run_finished`` at its last, so durations
and statuses are those of the original run. Images, audio, graphs and histograms in
TF2's tensor form are counted and skipped (the command says how many). A directory
imported before (same absolute path) is skipped unless ``--again``. The rows are written
synchronously, one segment per stream, with the store's atomic publish: an interrupted
import leaves a run without ``run_finished`` (status ``crashed``), never a torn file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.location import StorePath

SOURCE = "tensorboard"


@dataclass(frozen=True)
class Point:
    tag: str
    step: int
    wall_time: float
    value: Any
    """A float (scalar), a ``integrations.tensorboard.histograms.Histogram`` or a str (text)."""
    key: str | None = None
    """The ``add_scalars`` key of a scalar from that call's sub-run (``loss_val``: ``val``)."""


@dataclass
class TensorBoardRun:
    scalars: list[Point] = field(default_factory=list)
    histograms: list[Point] = field(default_factory=list)
    texts: list[Point] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    """Tags not imported, by what they are (images, audio, ...)."""
    skipped_times: list[float] = field(default_factory=list)
    """Wall times of the events not imported: the run lasted until the last of them too."""
    hparams: dict[str, Any] | None = None
    """The hyperparameters of the hparams plugin's session start (``add_hparams``), if any."""
    hparams_metrics: frozenset[str] = frozenset()
    """The metric tags the hparams plugin's experiment names (``hparam/accuracy``)."""
    subruns: list[str] = field(default_factory=list)
    """Sub-run directories merged into this run, relative to it."""

    def merge(self, sub: TensorBoardRun, where: str, *, key: str | None) -> None:
        """Take in a sub-run found at ``where`` (relative to this run's directory); ``key``:
        the ``add_scalars`` key its scalars are the values of (None: an hparams sub-run)."""
        self.scalars += [replace(p, key=key) for p in sub.scalars] if key else sub.scalars
        self.histograms += sub.histograms
        self.texts += sub.texts
        self.skipped += sub.skipped
        self.skipped_times += sub.skipped_times
        if sub.hparams is not None:
            self.hparams = {**(self.hparams or {}), **sub.hparams}
        self.subruns.append(where)

    def span(self) -> tuple[float, float]:
        """Wall times of the first and the last event of the run, imported or not."""
        times = [p.wall_time for p in self.scalars + self.histograms + self.texts]
        times += self.skipped_times
        return min(times), max(times)


def run_name(logdir: Path, run_dir: Path) -> str:
    rel = run_dir.relative_to(logdir)
    return logdir.resolve().name if rel == Path(".") else "-".join(rel.parts)


def read_run(run_dir: Path) -> TensorBoardRun:
    """Every scalar, histogram and text event of one run directory, in file order."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    from integrations.tensorboard.histograms import Histogram

    keep_all = {k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE}
    acc = ea.EventAccumulator(str(run_dir), size_guidance=keep_all)
    acc.Reload()
    tags = acc.Tags()
    run = TensorBoardRun()
    for tag in tags[ea.SCALARS]:
        run.scalars += [Point(tag, e.step, e.wall_time, float(e.value)) for e in acc.Scalars(tag)]
    for tag in tags[ea.HISTOGRAMS]:
        run.histograms += [
            Point(tag, e.step, e.wall_time, Histogram.of(e.histogram_value))
            for e in acc.Histograms(tag)
        ]
    for tag in tags[ea.TENSORS]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name or "tensors"
        events = acc.Tensors(tag)
        if plugin == "scalars":  # add_scalar(new_style=True), tf.summary.scalar
            run.scalars += [
                Point(tag, e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in events
            ]
        elif plugin == "hparams":  # metadata only, read by _read_hparams
            continue
        elif plugin == "text":
            # torch's add_text writes the tag "<tag>/text_summary"
            name = tag.removesuffix("/text_summary") or tag
            run.texts += [Point(name, e.step, e.wall_time, _text(e.tensor_proto)) for e in events]
        else:
            run.skipped[plugin] += 1
            run.skipped_times += [e.wall_time for e in events]
    for kind, read in ((ea.IMAGES, acc.Images), (ea.AUDIO, acc.Audio)):
        for tag in tags[kind]:
            run.skipped[kind] += 1
            run.skipped_times += [e.wall_time for e in read(tag)]
    if tags[ea.GRAPH]:
        run.skipped["graph"] += 1
    _read_hparams(acc, run)
    return run


def _read_hparams(acc: Any, run: TensorBoardRun) -> None:
    """The hparams plugin's session start and experiment (metadata only: no values)."""
    from google.protobuf.message import DecodeError
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        contents = acc.PluginTagToContent("hparams")
    except KeyError:  # no summary of that plugin in the run
        return
    for content in contents.values():
        try:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
        except DecodeError:
            run.skipped["unreadable hparams"] += 1
            continue
        if data.HasField("session_start_info"):
            hparams = data.session_start_info.hparams
            found = {k: _hparam(hparams[k]) for k in sorted(hparams)}
            run.hparams = {**(run.hparams or {}), **found}
        if data.HasField("experiment"):
            tags = {m.name.tag for m in data.experiment.metric_infos}
            run.hparams_metrics = run.hparams_metrics | tags


def _hparam(value: Any) -> Any:
    """A ``google.protobuf.Value`` as Python (NaN and infinities too, which protobuf's
    JSON conversion refuses; the payload spells them as strings)."""
    from google.protobuf import json_format

    kind = value.WhichOneof("kind")
    if kind in ("number_value", "string_value", "bool_value"):
        return getattr(value, kind)
    return json_format.MessageToDict(value)  # lists, structs, null


def write_run(root: StorePath, name: str, run_dir: Path, run: TensorBoardRun) -> str:
    """Write ``run`` as a new run of the store at ``root``; its run id."""
    import importlib.metadata

    from integrations.tensorboard.histograms import bucket_quantiles, quantile_columns, statistics
    from integrations.tensorboard.tags import histogram_key, metric_key, scalars_key
    from store import claims
    from store.layout import SegmentName, stream_dir
    from store.records import Rows, build_table, json_safe
    from store.schema import SCHEMA_VERSION, EventKind, Stream
    from store.segments import write_segment

    run_id = claims.claim_run_dir(root, name)
    attempt = claims.claim_attempt(root / run_id, 0)
    points = run.scalars + run.histograms + run.texts
    first_time, last_time = run.span()
    first_step, last_step = min(p.step for p in points), max(p.step for p in points)

    def event(kind: EventKind, payload: dict[str, Any], step: int, wall_time: float) -> Rows:
        text = json.dumps(json_safe(payload), allow_nan=False)
        return Rows(Stream.EVENTS, step, None, wall_time, {"kind": [kind.value], "payload": [text]})

    started = {
        "name": name,
        "config": run.hparams or {},
        "source": SOURCE,
        "imported_from": str(run_dir.resolve()),
        "subruns": run.subruns,
        "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "tensorboard": importlib.metadata.version("tensorboard"),
        "rank": 0,
        "world_size": 1,
        "attempt": attempt,
        "resumed": False,
        "start_step": first_step,
        "schema_version": SCHEMA_VERSION,
    }
    scalars = []
    renamed: dict[str, list[str | None]] = {}
    for p in run.scalars:
        tag = p.tag if p.key is None else f"{p.tag.strip('/')}/{p.key.strip('/')}"
        metric, split = metric_key(p.tag) if p.key is None else scalars_key(p.tag, p.key)
        if "/".join(k for k in (metric, split) if k is not None) != tag:
            renamed[tag] = [metric, split]
        scalars.append(
            Rows(Stream.SCALARS, p.step, None, p.wall_time, _one(metric, split, p.value))
        )
    tensors = []
    for p in run.histograms:
        param, kind = histogram_key(p.tag)
        stats = {k: [v] for k, v in statistics(p.value).items()}
        tensors.append(
            Rows(
                Stream.TENSORS,
                p.step,
                None,
                p.wall_time,
                {"param": [param], "kind": [kind], **stats},
            )
        )
        quantiles = quantile_columns(p.tag, bucket_quantiles(p.value))
        scalars.append(Rows(Stream.SCALARS, p.step, None, p.wall_time, quantiles))
    notes = [
        event(EventKind.NOTE, {"tag": p.tag, "text": p.value}, p.step, p.wall_time)
        for p in run.texts
    ]
    started["tensorboard_tags"] = renamed
    finished = {"steps": last_step, "rows_dropped": 0, "hook_failures": {}, "imported": True}
    segments = [
        (Stream.EVENTS, [event(EventKind.RUN_STARTED, started, first_step, first_time)]),
        (Stream.SCALARS, scalars),
        (Stream.TENSORS, tensors),
        (Stream.EVENTS, [*notes, event(EventKind.RUN_FINISHED, finished, last_step, last_time)]),
    ]
    seq = 0
    for number, (stream, batches) in enumerate(segments):
        if not batches:
            continue
        table = build_table(stream, batches, run_id=run_id, rank=0, attempt=attempt, first_seq=seq)
        seq += table.num_rows
        filename = SegmentName(0, attempt, number, number).filename()
        write_segment(table, stream_dir(root, run_id, stream), filename)
    return run_id


def imported_paths(root: StorePath) -> set[str]:
    """``imported_from`` of every run in ``root`` that this command wrote."""
    from store.location import read_table

    paths: set[str] = set()
    for path in _event_files(root):
        try:
            table = read_table(path, columns=["kind", "payload"])
        except (OSError, ValueError):  # unreadable files are the reader's to list
            continue
        for kind, payload in zip(
            table["kind"].to_pylist(), table["payload"].to_pylist(), strict=True
        ):
            if kind != "run_started" or not payload:
                continue
            try:
                started = json.loads(payload)
            except ValueError:
                continue
            if isinstance(started, dict) and started.get("source") == SOURCE:
                paths.add(str(started.get("imported_from")))
    return paths


def _event_files(root: StorePath) -> Iterator[StorePath]:
    if not root.is_dir():
        return  # a fresh store (on object storage, a prefix with no object yet)
    for run_dir in root.iterdir():
        events = run_dir / "events"
        if run_dir.name.startswith(".") or not events.is_dir():
            continue
        yield from (
            p
            for p in events.iterdir()
            if p.name.endswith(".parquet") and not p.name.startswith(".")
        )


def _one(name: str, split: str | None, value: float) -> dict[str, list[Any]]:
    return {"name": [name], "split": [split], "value": [value]}


def _text(proto: Any) -> str:
    from tensorboard.util import tensor_util

    value = tensor_util.make_ndarray(proto)
    items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.flat]
    return "\n".join(items)


def skipped_note(run: TensorBoardRun) -> str:
    if not run.skipped:
        return ""
    listed = ", ".join(f"{kind} ({n} tags)" for kind, n in sorted(run.skipped.items()))
    return f"; not imported: {listed}"
