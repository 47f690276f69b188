"""Record builders: host values -> one Arrow table per stream (golden tests)."""

from __future__ import annotations

import array
import datetime as dt
import math

import pyarrow as pa
import pytest

from store.records import PerRow, Rows, build_table
from store.schema import SCHEMAS, Stream

UTC = dt.timezone.utc
T0 = 1_700_000_000.25  # 2023-11-14 22:13:20.250000 UTC
T1 = 1_700_000_001.123456


def _scalars() -> list[Rows]:
    return [
        Rows(
            Stream.SCALARS,
            step=1,
            epoch=None,
            wall_time=T0,
            columns={"name": ["loss", "acc"], "split": ["train", "train"], "value": [2.5, 0.5]},
        ),
        # No "split" column: null-filled. Non-finite values stay values.
        Rows(
            Stream.SCALARS,
            step=2,
            epoch=0,
            wall_time=T1,
            columns={"name": ["loss", "grad", "neg"], "value": [math.nan, math.inf, -math.inf]},
        ),
    ]


def test_build_table_golden_scalars() -> None:
    table = build_table(Stream.SCALARS, _scalars(), run_id="r1", rank=2, attempt=1, first_seq=10)
    assert table.schema.equals(SCHEMAS[Stream.SCALARS], check_metadata=True)
    got = table.to_pydict()
    value = got.pop("value")
    assert got == {
        "run_id": ["r1"] * 5,
        "rank": [2] * 5,
        "attempt": [1] * 5,
        "seq": [10, 11, 12, 13, 14],
        "step": [1, 1, 2, 2, 2],
        "epoch": [None, None, 0, 0, 0],
        "wall_time": [
            dt.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC),
            dt.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC),
            dt.datetime(2023, 11, 14, 22, 13, 21, 123456, tzinfo=UTC),
            dt.datetime(2023, 11, 14, 22, 13, 21, 123456, tzinfo=UTC),
            dt.datetime(2023, 11, 14, 22, 13, 21, 123456, tzinfo=UTC),
        ],
        "name": ["loss", "acc", "loss", "grad", "neg"],
        "split": ["train", "train", None, None, None],
    }
    assert value[:2] == [2.5, 0.5]
    assert math.isnan(value[2])
    assert value[3:] == [math.inf, -math.inf]


def test_non_finite_values_are_values_not_nulls() -> None:
    table = build_table(Stream.SCALARS, _scalars(), run_id="r1", rank=0, attempt=0, first_seq=0)
    assert table.column("value").null_count == 0
    assert table.column("split").null_count == 3


def test_wall_time_is_microseconds_since_the_epoch_in_utc() -> None:
    table = build_table(Stream.SCALARS, _scalars(), run_id="r", rank=0, attempt=0, first_seq=0)
    assert table.schema.field("wall_time").type == pa.timestamp("us", tz="UTC")
    micros = table.column("wall_time").cast(pa.int64()).to_pylist()
    assert micros[0] == 1_700_000_000_250_000
    assert micros[-1] == 1_700_000_001_123_456


def test_missing_stream_columns_are_null_filled() -> None:
    rows = Rows(Stream.TENSORS, step=3, epoch=1, wall_time=T0, columns={"param": ["w"]})
    table = build_table(Stream.TENSORS, [rows], run_id="r", rank=0, attempt=0, first_seq=0)
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["param"] == "w"
    for column in ("kind", "numel", "norm", "mean", "std", "nonfinite"):
        assert row[column] is None


def test_no_batches_build_an_empty_table_of_the_stream_schema() -> None:
    table = build_table(Stream.EVENTS, [], run_id="r", rank=0, attempt=0, first_seq=7)
    assert table.num_rows == 0
    assert table.schema.equals(SCHEMAS[Stream.EVENTS], check_metadata=True)


def test_unknown_column_raises_value_error_naming_it() -> None:
    rows = Rows(Stream.SCALARS, step=0, epoch=None, wall_time=T0, columns={"nmae": ["loss"]})
    with pytest.raises(ValueError, match="nmae"):
        build_table(Stream.SCALARS, [rows], run_id="r", rank=0, attempt=0, first_seq=0)


def test_ragged_column_lengths_raise_value_error_naming_the_column() -> None:
    rows = Rows(
        Stream.SCALARS,
        step=0,
        epoch=None,
        wall_time=T0,
        columns={"name": ["a", "b"], "split": ["train", "train"], "value": [1.0]},
    )
    with pytest.raises(ValueError, match="'value'"):
        build_table(Stream.SCALARS, [rows], run_id="r", rank=0, attempt=0, first_seq=0)


def test_rows_length_is_the_length_of_its_columns() -> None:
    assert len(_scalars()[1]) == 3
    assert len(Rows(Stream.EVENTS, step=0, epoch=None, wall_time=T0, columns={})) == 0


def test_empty_batches_between_others_leave_the_envelope_aligned() -> None:
    def batch(step: int, epoch: int | None, names: list[str]) -> Rows:
        columns = {"name": names, "split": ["train"] * len(names), "value": [1.0] * len(names)}
        return Rows(Stream.SCALARS, step=step, epoch=epoch, wall_time=step + 0.5, columns=columns)

    batches = [
        batch(1, None, []),
        batch(2, 3, ["a", "b"]),
        batch(3, None, []),
        batch(4, None, ["c"]),
    ]
    table = build_table(Stream.SCALARS, batches, run_id="r", rank=1, attempt=2, first_seq=10)
    rows = table.to_pylist()
    assert [(r["name"], r["step"], r["epoch"], r["seq"]) for r in rows] == [
        ("a", 2, 3, 10),
        ("b", 2, 3, 11),
        ("c", 4, None, 12),
    ]
    assert [r["wall_time"].timestamp() for r in rows] == [2.5, 2.5, 4.5]
    assert {(r["run_id"], r["rank"], r["attempt"]) for r in rows} == {("r", 1, 2)}
    assert table.schema == SCHEMAS[Stream.SCALARS]


def test_packed_arrow_and_list_columns_mix_in_one_table() -> None:
    """The collector hands statistics over as packed arrays and labels as Arrow arrays;
    other producers use lists. Any mix, with columns left out, gives the same rows."""
    import array

    labels = pa.array(["w", "b"])
    packed = array.array("d", [0.5, math.nan])
    counts = array.array("q", [3, 4])
    batches = [
        Rows(Stream.TENSORS, 1, None, T0, {"param": labels, "norm": packed, "numel": counts}),
        Rows(Stream.TENSORS, 2, None, T0, {"param": ["x"], "norm": [1.5], "numel": [7]}),
        Rows(Stream.TENSORS, 3, None, T0, {"param": labels, "norm": packed, "numel": counts}),
        Rows(Stream.TENSORS, 4, None, T0, {"param": labels, "numel": counts}),  # norm null
    ]
    table = build_table(Stream.TENSORS, batches, run_id="r", rank=0, attempt=0, first_seq=0)
    assert table.schema == SCHEMAS[Stream.TENSORS]
    rows = table.to_pylist()
    assert [r["param"] for r in rows] == ["w", "b", "x", "w", "b", "w", "b"]
    assert [r["numel"] for r in rows] == [3, 4, 7, 3, 4, 3, 4]
    norms = [r["norm"] for r in rows]
    assert norms[0] == 0.5 and math.isnan(norms[1]) and norms[2] == 1.5
    assert norms[3] == 0.5 and math.isnan(norms[4]) and norms[5:] == [None, None]
    assert [r["step"] for r in rows] == [1, 1, 2, 3, 3, 4, 4]
    # The producer's arrays are not the writer's to extend (the same one came twice).
    assert packed.tolist()[0] == 0.5 and len(packed) == 2 and len(counts) == 2


def test_packed_values_of_another_type_code_are_refused() -> None:
    import array

    bad = Rows(Stream.TENSORS, 1, None, T0, {"param": ["w"], "norm": array.array("f", [1.0])})
    with pytest.raises(ValueError, match="type code 'f'"):
        build_table(Stream.TENSORS, [bad], run_id="r", rank=0, attempt=0, first_seq=0)


def test_per_row_envelopes_mix_with_shared_ones_in_order() -> None:
    shared = Rows(Stream.SCALARS, 3, 0, 1.5, {"name": ["x"], "value": [1.0]})
    per_row = Rows(
        Stream.SCALARS,
        9,
        None,
        0.0,
        {"name": ["lr"] * 3, "value": array.array("d", [0.1, 0.2, 0.3])},
        PerRow(array.array("q", [7, 8, 9]), [1, None, 2], array.array("d", [2.0000015, 3.25, 4.0])),
    )
    after = Rows(Stream.SCALARS, 10, 2, 5.0, {"name": ["y"], "value": [2.0]})
    table = build_table(
        Stream.SCALARS, [shared, per_row, after], run_id="r", rank=0, attempt=0, first_seq=0
    )
    assert table.column("step").to_pylist() == [3, 7, 8, 9, 10]
    assert table.column("epoch").to_pylist() == [0, 1, None, 2, 2]
    micros = table.column("wall_time").cast(pa.int64()).to_pylist()
    assert micros == [1_500_000, 2_000_001, 3_250_000, 4_000_000, 5_000_000]
    assert table.column("seq").to_pylist() == [0, 1, 2, 3, 4]


def test_a_per_row_envelope_of_the_wrong_length_is_refused() -> None:
    rows = Rows(
        Stream.SCALARS,
        2,
        None,
        0.0,
        {"name": ["a", "b"], "value": [1.0, 2.0]},
        PerRow([1], [None, None], [0.0, 0.0]),
    )
    with pytest.raises(ValueError, match="per-row steps: 1 values for 2 rows"):
        build_table(Stream.SCALARS, [rows], run_id="r", rank=0, attempt=0, first_seq=0)
