"""Run ids and segment names: what a store's files are called and what they mean."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from store.layout import (
    RUN_ID_RE,
    SegmentName,
    new_run_id,
    parse_segment_name,
    run_dir,
    stream_dir,
)
from store.schema import Stream

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("segment", "filename"),
    [
        (SegmentName(0, 0, 0, 0), "0-0-000000.parquet"),
        (SegmentName(3, 2, 17, 17), "3-2-000017.parquet"),
        (SegmentName(0, 1, 4, 12), "0-1-000004_000012.parquet"),
        (SegmentName(12, 0, 1_234_567, 1_234_567), "12-0-1234567.parquet"),
    ],
)
def test_filename_and_parse_round_trip(segment: SegmentName, filename: str) -> None:
    assert segment.filename() == filename
    assert parse_segment_name(filename) == segment
    assert parse_segment_name(segment.filename()) == segment


def test_plain_and_compacted_names_are_told_apart() -> None:
    assert not SegmentName(0, 0, 5, 5).compacted
    assert SegmentName(0, 0, 5, 9).compacted


def test_zero_padded_names_sort_like_their_numbers() -> None:
    names = [SegmentName(0, 0, n, n).filename() for n in (10, 2, 100, 0)]
    assert sorted(names) == [SegmentName(0, 0, n, n).filename() for n in (0, 2, 10, 100)]


def test_compacted_segment_covers_the_plain_segments_in_its_range() -> None:
    merged = SegmentName(0, 0, 2, 6)
    assert merged.covers(SegmentName(0, 0, 2, 2))
    assert merged.covers(SegmentName(0, 0, 4, 4))
    assert merged.covers(SegmentName(0, 0, 6, 6))
    assert merged.covers(SegmentName(0, 0, 3, 5))  # an older, smaller merge


@pytest.mark.parametrize(
    "other",
    [
        SegmentName(0, 0, 1, 1),  # before the range
        SegmentName(0, 0, 7, 7),  # after the range
        SegmentName(0, 0, 1, 4),  # overlaps only partly
        SegmentName(1, 0, 4, 4),  # another rank
        SegmentName(0, 1, 4, 4),  # another attempt
        SegmentName(0, 0, 2, 6),  # itself
    ],
)
def test_compacted_segment_does_not_cover_outside_its_rank_attempt_and_range(
    other: SegmentName,
) -> None:
    assert not SegmentName(0, 0, 2, 6).covers(other)


def test_plain_segment_covers_nothing() -> None:
    plain = SegmentName(0, 0, 4, 4)
    assert not plain.covers(SegmentName(0, 0, 4, 4))
    assert not plain.covers(SegmentName(0, 0, 3, 5))


@pytest.mark.parametrize(
    "name",
    [
        ".0-0-000001.parquet.1234.tmp",  # a temporary file being written
        ".0-0-000001.parquet",  # hidden
        "0-0-000001.parquet.tmp",
        "0-0-000001.csv",
        "0-0.parquet",
        "a-0-000001.parquet",
        "-1-0-000001.parquet",
        "0-0-000005_000002.parquet",  # last before first
        "part-0.parquet",  # Spark / pyarrow dataset names
        "0-0-000001_.parquet",
        "0-0-000001.parquet/",
        "",
    ],
)
def test_parse_rejects_temporary_and_foreign_names(name: str) -> None:
    assert parse_segment_name(name) is None


@pytest.mark.parametrize(
    "hostile",
    ["../../etc", "a b/c", "<script>", "", None, "..", "/", ".hidden", "名前", "a" * 300, "-x-"],
)
def test_run_id_is_filesystem_safe_for_hostile_names(hostile: str | None, tmp_path: Path) -> None:
    run_id = new_run_id(hostile, now=NOW)
    assert RUN_ID_RE.match(run_id), run_id
    assert "/" not in run_id and "\\" not in run_id and ".." not in run_id
    assert not run_id.startswith((".", "-"))
    path = run_dir(tmp_path, run_id)
    path.mkdir()
    assert path.parent == tmp_path
    assert "20240506-070809" in run_id


def test_run_id_keeps_a_safe_name_readable() -> None:
    assert new_run_id("digits-cnn_v2.1", now=NOW).startswith("digits-cnn_v2.1-20240506-070809-")
    assert new_run_id("a b/c", now=NOW).startswith("a-b-c-20240506-070809-")
    assert new_run_id(None, now=NOW).startswith("run-20240506-070809-")


def test_run_ids_are_unique_across_calls_in_the_same_second() -> None:
    ids = {new_run_id("sweep", now=NOW) for _ in range(64)}
    assert len(ids) == 64


def test_run_ids_sort_by_start_time() -> None:
    later = NOW + dt.timedelta(seconds=1)
    assert new_run_id("x", now=NOW) < new_run_id("x", now=later)


def test_stream_dir_is_run_dir_slash_stream(tmp_path: Path) -> None:
    assert stream_dir(tmp_path, "r1", Stream.SCALARS) == tmp_path / "r1" / "scalars"
    assert stream_dir(tmp_path, "r1", "events") == tmp_path / "r1" / "events"


def test_parse_rejects_a_name_with_a_trailing_newline() -> None:
    assert parse_segment_name("0-0-000001.parquet\n") is None
