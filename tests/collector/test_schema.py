"""The store contract: one Arrow schema per stream, envelope first, versioned."""

from __future__ import annotations

import pyarrow as pa
import pytest

from store.schema import (
    ENVELOPE,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    STREAM_KEY,
    Stream,
    schema_for,
    stream_columns,
)

ENVELOPE_COLUMNS = ("run_id", "rank", "attempt", "seq", "step", "epoch", "wall_time")


@pytest.mark.parametrize("stream", list(Stream), ids=str)
def test_every_schema_starts_with_the_envelope_in_order(stream: Stream) -> None:
    schema = schema_for(stream)
    assert tuple(schema.names[: len(ENVELOPE_COLUMNS)]) == ENVELOPE_COLUMNS


@pytest.mark.parametrize("stream", list(Stream), ids=str)
def test_schema_metadata_carries_version_and_stream_name(stream: Stream) -> None:
    metadata = schema_for(stream).metadata
    assert metadata[SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION).encode()
    assert metadata[STREAM_KEY] == stream.value.encode()


@pytest.mark.parametrize("stream", list(Stream), ids=str)
def test_stream_columns_are_the_schema_after_the_envelope(stream: Stream) -> None:
    schema = schema_for(stream)
    own = stream_columns(stream)
    assert own == tuple(schema.names[len(ENVELOPE_COLUMNS) :])
    assert not set(own) & set(ENVELOPE_COLUMNS)
    assert len(set(own)) == len(own)


@pytest.mark.parametrize("stream", list(Stream), ids=str)
def test_schemas_table_and_string_names_agree_with_schema_for(stream: Stream) -> None:
    assert SCHEMAS[stream].equals(schema_for(stream), check_metadata=True)
    assert schema_for(stream.value).equals(schema_for(stream), check_metadata=True)
    assert stream_columns(stream.value) == stream_columns(stream)


def test_envelope_types_and_nullability() -> None:
    fields = {f.name: f for f in ENVELOPE}
    assert fields["wall_time"].type == pa.timestamp("us", tz="UTC")
    assert fields["seq"].type == pa.int64() and fields["step"].type == pa.int64()
    assert fields["rank"].type == pa.int32() and fields["attempt"].type == pa.int32()
    assert fields["epoch"].nullable
    assert not any(f.nullable for name, f in fields.items() if name != "epoch")


def test_design_columns_of_each_stream() -> None:
    # DESIGN.md §3: the columns other engines read by name.
    assert stream_columns(Stream.EVENTS) == ("kind", "payload")
    assert stream_columns(Stream.SCALARS) == ("name", "split", "value")
    assert SCHEMAS[Stream.SCALARS].field("value").type == pa.float64()
    assert stream_columns(Stream.TENSORS) == (
        "param", "kind", "numel", "norm", "mean", "std", "min", "max", "abs_max", "zero_frac",
        "nonfinite",
    )  # fmt: skip
    assert stream_columns(Stream.SYSTEM) == (
        "step_time_s", "data_time_s", "compute_time_s", "samples_per_s", "max_memory_bytes",
        "batch_size", "grad_norm", "grad_norm_step", "clip_ratio", "grad_carried_norm",
        "backwards",
    )  # fmt: skip


def test_unknown_stream_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        schema_for("gradients")
