"""The store contract: streams, their Arrow schemas, and the schema version.

Every engine (DuckDB views, Polars, pandas, Spark) reads the store through these
definitions, so this module imports nothing heavier than pyarrow. A segment's
Parquet metadata carries ``telemetry.schema_version``; readers skip segments
written by a newer, unknown version instead of misreading them.

Layout of a store (see ``store.layout``)::

    <root>/<run_id>/<stream>/<rank>-<attempt>-<seq>.parquet

Envelope columns, on every row of every stream:

    run_id     string     the run (a directory name under the root)
    rank       int32      distributed rank of the writer (0 when not distributed)
    attempt    int32      0 for a fresh run, +1 for each resume
    seq        int64      per-writer row number, strictly increasing
    step       int64      global optimizer step (number of optimizer steps taken)
    epoch      int64      nullable
    wall_time  timestamp  microseconds, UTC
"""

from __future__ import annotations

import enum

import pyarrow as pa

SCHEMA_VERSION = 1
"""Bumped when a column changes meaning or type; adding a nullable column is not a bump."""

SCHEMA_VERSION_KEY = b"telemetry.schema_version"
STREAM_KEY = b"telemetry.stream"


class Stream(str, enum.Enum):
    """The streams of a run: one directory and one Arrow schema each."""

    EVENTS = "events"
    SCALARS = "scalars"
    TENSORS = "tensors"
    ACTIVATIONS = "activations"
    SAMPLES = "samples"
    MODULES = "modules"
    SYSTEM = "system"
    EXPORTS = "exports"
    INPUTS = "inputs"
    PREDICTIONS = "predictions"

    def __str__(self) -> str:
        return self.value


class EventKind(str, enum.Enum):
    """Values of the ``kind`` column of the ``events`` stream."""

    RUN_STARTED = "run_started"
    CONFIG = "config"
    HEARTBEAT = "heartbeat"
    RUN_FINISHED = "run_finished"
    RUN_FAILED = "run_failed"
    CHECKPOINT = "checkpoint"
    NOTE = "note"
    DROPPED = "dropped"
    # The first module whose forward output held NaN/Inf, found by the per-step check;
    # payload: {"module", "module_type", "numel", "sum"} (the sum of that output:
    # "NaN", "Infinity" or "-Infinity" as strings; NaN also when it held +Inf and -Inf);
    # module "(input)" means the model's input. Issue 3.
    NONFINITE_ORIGIN = "nonfinite_origin"
    # The overhead budget chose new sampling strides from this step on (collector.budget);
    # payload: {"stats_every", "activations_every", "overhead_budget", "stats_ms",
    # "activations_ms", "step_ms"} (the smoothed measurements behind the choice). Issue 7.
    SAMPLING = "sampling"
    # The first forward without gradients (validation under no_grad/inference_mode) in
    # which a module that behaves differently in training (Dropout, BatchNorm...) was in
    # training mode (collector.modes); payload: {"modules" (up to 20 names),
    # "module_types", "count", "of"} (how many of the model's mode-dependent modules).
    # The run's end event says on how many steps it happened: "inference_forwards":
    # {"steps", "training_mode_steps"}. Issue 16.
    EVAL_IN_TRAINING_MODE = "eval_in_training_mode"
    # Which way a metric improves, from tel.define_metric(); payload: {"name", "goal"}
    # (goal "min" or "max"); the latest for a name wins (store.metrics). Issue 18.
    METRIC_DEFINED = "metric_defined"
    # The loop was asked to stop (tel.should_stop) or NonFiniteError raised
    # (collector.stopping); payload {"reason": "nonfinite", "action" ("stop" or "raise"),
    # "what" ("loss" or "gradient"), "name", "value", "origin" (the nonfinite_origin
    # payload or null), "origin_step"} or {"reason": "early_stopping", "metric", "mode",
    # "patience", "min_delta", "best", "best_step", "evaluations"}. Issue 21.
    STOP = "stop"
    # A logged value of the early-stopping metric that is the best so far (tel.is_best);
    # payload {"metric", "value", "mode"}; the event's step is the value's. Issue 21.
    BEST = "best"

    def __str__(self) -> str:
        return self.value


ORIGIN_INPUT = "(input)"
"""The ``module`` of a ``nonfinite_origin`` event when the model's input itself was
non-finite."""


class TensorKind(str, enum.Enum):
    """Values of the ``kind`` column of the ``tensors`` stream."""

    GRAD = "grad"
    WEIGHT = "weight"
    UPDATE = "update"  # the change one optimizer step made: w_t - w_{t-1}

    def __str__(self) -> str:
        return self.value


class ExportStatus(str, enum.Enum):
    """Values of the ``status`` column of the ``exports`` stream."""

    OK = "ok"
    FAILED = "failed"  # `error` says why; one format failing never stops the others

    def __str__(self) -> str:
        return self.value


ENVELOPE: tuple[pa.Field, ...] = (
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("attempt", pa.int32(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("step", pa.int64(), nullable=False),
    pa.field("epoch", pa.int64()),
    pa.field("wall_time", pa.timestamp("us", tz="UTC"), nullable=False),
)
ENVELOPE_NAMES = frozenset(f.name for f in ENVELOPE)

_F64 = pa.float64()
_I64 = pa.int64()

# Summary statistics shared by tensors and activations. `nonfinite` counts NaN/Inf
# elements; the other statistics are computed over all elements, so one NaN makes
# mean/std/norm NaN on purpose: the report must not hide it.
_SUMMARY: tuple[tuple[str, pa.DataType], ...] = (
    ("numel", _I64),
    ("mean", _F64),
    ("std", _F64),
    ("min", _F64),
    ("max", _F64),
)

_STREAM_COLUMNS: dict[Stream, tuple[tuple[str, pa.DataType], ...]] = {
    Stream.EVENTS: (("kind", pa.string()), ("payload", pa.string())),
    Stream.SCALARS: (("name", pa.string()), ("split", pa.string()), ("value", _F64)),
    Stream.TENSORS: (
        ("param", pa.string()),
        ("kind", pa.string()),
        ("numel", _I64),
        ("norm", _F64),
        ("mean", _F64),
        ("std", _F64),
        ("min", _F64),
        ("max", _F64),
        ("abs_max", _F64),
        ("zero_frac", _F64),
        ("nonfinite", _I64),
    ),
    # One row per leaf module per sampled training forward. `saturated_frac`: share of
    # outputs within 1e-3 (relative to the range) of a bounded activation's bounds (null
    # for unbounded ones); `dead_frac`: for ReLU-family outputs, the share of units
    # (channels of a conv output, features of a linear one) that were <= 0 for every
    # example of the batch (null for other modules).
    Stream.ACTIVATIONS: (
        ("module", pa.string()),
        ("module_type", pa.string()),
        *_SUMMARY,
        ("zero_frac", _F64),
        ("saturated_frac", _F64),
        ("nonfinite", _I64),
        ("dead_frac", _F64),
    ),
    # The model's input at sampled training forwards (issue 22): one row per feature of
    # a [batch, features] input (`layout` "features") or per channel of a [batch,
    # channels, ...] one ("channels"), reduced over every other dimension, the first
    # MAX_INPUT_FEATURES of them (collector.inputs). `numel`: the values reduced.
    Stream.INPUTS: (
        ("index", pa.int32()),
        ("layout", pa.string()),
        ("numel", _I64),
        ("mean", _F64),
        ("std", _F64),
        ("min", _F64),
        ("max", _F64),
    ),
    # What the model predicted against the targets (issue 22; tel.log_predictions,
    # collector.predictions), summed over the calls of one split at one step (several
    # calls at a step: validation batch by batch; the views add their rows up).
    # Classification: one row per non-empty confusion cell, `true_class`,
    # `predicted_class` (the argmax of logits, taken on the device) and `count`; the
    # regression columns null. Regression: one row per output column `index` (the first
    # MAX_OUTPUTS of them) with `count` and, for the targets, the outputs and the errors
    # (output - target), their mean and centred sum of squares (`*_m2`, so rows merge
    # exactly whatever the values' offset: Chan et al.), the mean absolute error and the
    # largest absolute error; the class columns null.
    Stream.PREDICTIONS: (
        ("split", pa.string()),
        ("true_class", _I64),
        ("predicted_class", _I64),
        ("count", _I64),
        ("index", pa.int32()),
        ("target_mean", _F64),
        ("target_m2", _F64),
        ("output_mean", _F64),
        ("output_m2", _F64),
        ("error_mean", _F64),
        ("error_m2", _F64),
        ("error_abs_mean", _F64),
        ("error_abs_max", _F64),
    ),
    # Image-like tensors. `data` holds `shape` (maps x H x W) as uint8 (`dtype`), each
    # map min-max scaled on its own: value = lo + byte / 255 * (hi - lo), with the
    # per-map `lo` and `hi` recorded.
    Stream.SAMPLES: (
        ("module", pa.string()),
        ("what", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("dtype", pa.string()),
        ("data", pa.binary()),
        ("lo", pa.list_(_F64)),
        ("hi", pa.list_(_F64)),
    ),
    # The model summary, written once from the first training forward. `params`
    # counts the module and its descendants (torchinfo's total), `own_params` only
    # what it registers itself; a module called several times (shared weights) has
    # one row and `calls` > 1, with the shapes of its first call. Shapes are JSON
    # text: a list of ints, or nested lists for tuple/dict inputs and outputs.
    # `feeds` (issue 16): "relu" when a functional ReLU (F.relu in a forward, not an
    # nn.ReLU module) reads the module's output; else null.
    Stream.MODULES: (
        ("module", pa.string()),
        ("module_type", pa.string()),
        ("parent", pa.string()),
        ("depth", pa.int32()),
        ("params", _I64),
        ("trainable_params", _I64),
        ("input_shape", pa.string()),
        ("output_shape", pa.string()),
        ("own_params", _I64),
        ("calls", _I64),
        ("feeds", pa.string()),
    ),
    # One row per optimizer step. The timing columns are null on a step that could not
    # be timed (an evaluation ran in its window; collector.system). `max_memory_bytes`
    # (peak host RSS, or CUDA memory allocated) is read at most once a second and null
    # on the rows between. Added for issue 16 (collector.gradients), nullable:
    #   batch_size         examples in the step's training forwards (the model input's
    #                      leading dimension, summed over accumulated micro-batches)
    #   grad_norm          global L2 norm of the gradients at the end of the last
    #                      backward, before clipping
    #   grad_norm_step     the same when the optimizer stepped (after any clipping)
    #   clip_ratio         grad_norm_step / grad_norm when the step was clipped, else null
    #   grad_carried_norm  norm of the gradients present when the step's first backward
    #                      began: null or 0 when they were reset, > 0 when zero_grad was
    #                      forgotten
    #   backwards          backward passes in the step (> 1: gradient accumulation)
    Stream.SYSTEM: (
        ("step_time_s", _F64),
        ("data_time_s", _F64),
        ("compute_time_s", _F64),
        ("samples_per_s", _F64),
        ("max_memory_bytes", _I64),
        ("batch_size", _I64),
        ("grad_norm", _F64),
        ("grad_norm_step", _F64),
        ("clip_ratio", _F64),
        ("grad_carried_norm", _F64),
        ("backwards", _I64),
    ),
    # One row per (format, batch size) of an export benchmark (``exports.benchmark``), all
    # rows of one benchmark at the same step; a format that failed before it could be
    # timed has one row with a null batch size. Format-level facts (size, load time,
    # parity, metric, sparsity) repeat on each batch size's row. Latencies are per call
    # after warm-up; `throughput` is samples per second over the timed calls. Parity is
    # measured on one fixed batch against eager: `max_abs_diff` = max |out - eager|,
    # `max_rel_diff` = that divided by max |eager| (scale-free, no blow-up near zero).
    # `metric_value` is the task metric (higher is better, e.g. accuracy) on eval data.
    # Added for issue 6 (nullable: older segments read as null, no version bump):
    #   load_time_ms  time to get a runnable model back from the saved file(s)
    #   max_rel_diff  see above
    #   sparsity      share of zero parameters (eager and pruned formats; else null)
    #   device        where the format ran ("cpu", "cuda:0"): ONNX Runtime's CPU provider
    #                 and dynamic int8 kernels run on the CPU whatever the model's device
    #   threads       intra-op threads of torch and ONNX Runtime during the measurement
    #   env           JSON text: torch/onnx/onnxruntime versions, python, platform, CPU
    #                 capability or GPU name, quantized engine, input shapes and dtypes
    # Added for issue 18 (nullable, no version bump): the latency is timed in interleaved
    # rounds and `latency_p50_ms` is the median of the round medians;
    #   latency_ci_low_ms, latency_ci_high_ms  its 95 % order-statistic interval
    #                 (exports.timing); null on rows written before: no interval known
    Stream.EXPORTS: (
        ("format", pa.string()),
        ("batch_size", _I64),
        ("latency_p50_ms", _F64),
        ("latency_p90_ms", _F64),
        ("throughput", _F64),
        ("size_bytes", _I64),
        ("max_abs_diff", _F64),
        ("metric_name", pa.string()),
        ("metric_value", _F64),
        ("status", pa.string()),
        ("error", pa.string()),
        ("load_time_ms", _F64),
        ("max_rel_diff", _F64),
        ("sparsity", _F64),
        ("device", pa.string()),
        ("threads", _I64),
        ("env", pa.string()),
        ("latency_ci_low_ms", _F64),
        ("latency_ci_high_ms", _F64),
    ),
}


def schema_for(stream: Stream | str) -> pa.Schema:
    """The Arrow schema of ``stream``: envelope first, then the stream's own columns."""
    s = Stream(stream)
    fields = [*ENVELOPE, *(pa.field(name, typ) for name, typ in _STREAM_COLUMNS[s])]
    return pa.schema(
        fields,
        metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(), STREAM_KEY: s.value.encode()},
    )


def stream_columns(stream: Stream | str) -> tuple[str, ...]:
    """The stream's own column names (without the envelope), in schema order."""
    return tuple(name for name, _ in _STREAM_COLUMNS[Stream(stream)])


SCHEMAS: dict[Stream, pa.Schema] = {s: schema_for(s) for s in Stream}
