"""Compaction: many small segments become one per (stream, rank, attempt), crash-safely."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store import segments
from store.compaction import CompactionResult, compact_run, live_segments
from store.layout import SegmentName, parse_segment_name
from store.records import Rows
from store.schema import SCHEMAS, Stream
from store.segments import write_segment
from store.writer import Writer

from .read_back import read_stream

RUN = "run-1"
QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}


def _write_run(root: Path, *, flushes: int = 4, rank: int = 0, attempt: int = 0) -> None:
    """A closed run with ``flushes`` scalars and events segments (and one tensors segment)."""
    writer = Writer(root, RUN, rank=rank, attempt=attempt, **QUIET)
    try:
        for k in range(flushes):
            step = 10 * rank + k
            writer.put(
                Rows(
                    Stream.SCALARS,
                    step=step,
                    epoch=None,
                    wall_time=1_700_000_000.0 + step,
                    columns={"name": ["loss", "acc"], "split": ["train"] * 2, "value": [k, -k]},
                )
            )
            writer.put(
                Rows(
                    Stream.EVENTS,
                    step=step,
                    epoch=None,
                    wall_time=1_700_000_000.0 + step,
                    columns={"kind": ["note"], "payload": [json.dumps({"k": k})]},
                )
            )
            if k == 0:
                writer.put(
                    Rows(
                        Stream.TENSORS,
                        step=step,
                        epoch=None,
                        wall_time=1_700_000_000.0,
                        columns={"param": ["w"], "kind": ["grad"], "norm": [1.0]},
                    )
                )
            assert writer.flush()
    finally:
        writer.close()


def _names(directory: Path) -> list[SegmentName]:
    return sorted(s for p in directory.iterdir() if (s := parse_segment_name(p.name)) is not None)


def _rows(run: Path, stream: Stream) -> list[dict[str, object]]:
    return sorted(read_stream(run, stream).to_pylist(), key=lambda r: r["seq"])


def test_compaction_merges_the_segments_of_each_stream_into_one_with_every_row_once(
    tmp_path: Path,
) -> None:
    _write_run(tmp_path)
    run = tmp_path / RUN
    before = {s: _rows(run, s) for s in (Stream.SCALARS, Stream.EVENTS, Stream.TENSORS)}
    originals = {s: _names(run / s.value) for s in (Stream.SCALARS, Stream.EVENTS)}
    tensors_before = _names(run / "tensors")
    assert all(len(v) == 4 for v in originals.values())

    result = compact_run(run)

    assert result == CompactionResult(streams=2, segments_merged=8, files_removed=8)
    for stream, segs in originals.items():
        files = [p.name for p in (run / stream.value).iterdir()]
        first, last = segs[0].first, segs[-1].last
        assert files == [f"0-0-{first:06d}_{last:06d}.parquet"]
        assert _rows(run, stream) == before[stream]
        order = [(r["step"], r["seq"]) for r in read_stream(run, stream).to_pylist()]
        assert order == sorted(order)  # the merged file is in (step, seq) order
    # A stream with a single segment is left as it is.
    assert _names(run / "tensors") == tensors_before and len(tensors_before) == 1
    assert _rows(run, Stream.TENSORS) == before[Stream.TENSORS]


def test_compacting_a_compacted_run_changes_nothing(tmp_path: Path) -> None:
    _write_run(tmp_path)
    run = tmp_path / RUN
    compact_run(run)
    files = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert compact_run(run) == CompactionResult()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files


def test_compaction_folds_new_segments_into_an_older_merge(tmp_path: Path) -> None:
    _write_run(tmp_path, flushes=3)
    run = tmp_path / RUN
    compact_run(run)
    scalars = run / "scalars"
    [merged] = _names(scalars)
    extra = pa.Table.from_pylist(
        [{**read_stream(run, Stream.SCALARS).to_pylist()[0], "seq": 10_000}],
        schema=SCHEMAS[Stream.SCALARS],
    )
    write_segment(extra, scalars, SegmentName(0, 0, merged.last + 5, merged.last + 5).filename())

    compact_run(run)

    [again] = _names(scalars)
    assert (again.first, again.last) == (merged.first, merged.last + 5)
    assert read_stream(run, Stream.SCALARS).num_rows == 3 * 2 + 1


def test_compaction_keeps_ranks_and_attempts_apart(tmp_path: Path) -> None:
    _write_run(tmp_path, rank=0)
    _write_run(tmp_path, rank=1)
    _write_run(tmp_path, rank=0, attempt=1)
    run = tmp_path / RUN

    compact_run(run, rank=1)
    assert {(s.rank, s.attempt, s.compacted) for s in _names(run / "scalars")} == {
        (0, 0, False),
        (1, 0, True),
        (0, 1, False),
    }
    compact_run(run)
    names = _names(run / "scalars")
    assert [(s.rank, s.attempt) for s in names] == [(0, 0), (0, 1), (1, 0)]
    assert all(s.compacted for s in names)
    table = read_stream(run, Stream.SCALARS)
    assert table.num_rows == 3 * 4 * 2
    pairs = set(zip(table["rank"].to_pylist(), table["attempt"].to_pylist(), strict=True))
    assert pairs == {(0, 0), (1, 0), (0, 1)}


@pytest.mark.parametrize("deleted_before_crash", [0, 1, 3])
def test_crash_between_publishing_the_merge_and_deleting_originals_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deleted_before_crash: int
) -> None:
    import analysis

    _write_run(tmp_path)
    run = tmp_path / RUN
    expected = {s: _rows(run, s) for s in (Stream.SCALARS, Stream.EVENTS)}
    real_unlink = Path.unlink
    deleted: list[Path] = []

    def crashing_unlink(self: Path, missing_ok: bool = False) -> None:
        if parse_segment_name(self.name) is not None and len(deleted) >= deleted_before_crash:
            raise OSError(5, "simulated crash")
        deleted.append(self)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crashing_unlink)
    with pytest.raises(OSError, match="simulated crash"):
        compact_run(run)
    monkeypatch.undo()

    # Streams are compacted in Stream order: the crash hits the first merged stream (events)
    # after its merged file is published; scalars were not merged yet.
    events = run / "events"
    merged = [s for s in _names(events) if s.compacted]
    assert len(merged) == 1
    assert len(_names(events)) == 1 + 4 - deleted_before_crash  # leftovers remain
    live, covered = live_segments(events)
    assert list(live.values()) == merged and len(covered) == 4 - deleted_before_crash
    assert not any(s.compacted for s in _names(run / "scalars"))

    store = analysis.open_store(tmp_path)
    try:
        assert store.unreadable == []
        for stream, rows in expected.items():
            counts = store.sql(
                f"select count(*) as n, count(distinct seq) as d from raw_{stream.value}"
            )
            assert counts.row(0) == (len(rows), len(rows)), stream
        assert store.sql("select count(*) as n from scalars")["n"][0] == 4 * 2
    finally:
        store.close()

    result = compact_run(run)  # the second compaction removes the leftovers

    for stream, rows in expected.items():
        names = _names(run / stream.value)
        assert len(names) == 1 and names[0].compacted
        assert _rows(run, stream) == rows
    assert result.segments_merged == 4  # scalars, now
    assert result.files_removed == 4 + 4 - deleted_before_crash


def test_crash_after_a_hand_published_merge_reads_each_row_once(tmp_path: Path) -> None:
    import analysis

    _write_run(tmp_path)
    run = tmp_path / RUN
    scalars = run / "scalars"
    segs = _names(scalars)
    table = read_stream(run, Stream.SCALARS)
    write_segment(table, scalars, SegmentName(0, 0, segs[0].first, segs[-1].last).filename())

    with analysis.open_store(tmp_path) as store:
        assert store.sql("select count(*) as n from raw_scalars")["n"][0] == table.num_rows

    result = compact_run(run)
    assert result.files_removed >= len(segs)
    assert len(_names(scalars)) == 1


@pytest.mark.parametrize("junk", [b"not parquet at all", None], ids=["garbage", "empty-segment"])
def test_a_junk_file_named_like_a_merge_of_everything_deletes_no_real_segment(
    tmp_path: Path, junk: bytes | None
) -> None:
    _write_run(tmp_path, flushes=3)
    run = tmp_path / RUN
    scalars = run / "scalars"
    before = _rows(run, Stream.SCALARS)
    fake = scalars / SegmentName(0, 0, 0, 999_999).filename()  # 0-0-000000_999999.parquet
    if junk is None:  # a well-formed segment that holds none of the rows it claims
        write_segment(SCHEMAS[Stream.SCALARS].empty_table(), scalars, fake.name)
    else:
        fake.write_bytes(junk)
    live, covered = live_segments(scalars)
    assert fake not in live and fake not in covered  # it proves nothing, so it hides nothing
    assert len(live) == 3
    compact_run(run)
    assert fake.exists()  # left for the readers to name, never merged
    merged = [p for p in scalars.iterdir() if p != fake]
    assert len(merged) == 1
    assert sorted(pq.read_table(merged[0]).to_pylist(), key=lambda r: r["seq"]) == before


def test_a_merged_file_is_in_step_order_with_disjoint_step_ranges_per_row_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written out of step order (a validation pass logged after training steps)
    are merged by step, keeping their ``seq``; each bounded row group then covers its
    own step range, so a filter on step skips the others."""
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 4)
    writer = Writer(tmp_path, RUN, **QUIET)
    try:
        for steps in ([5, 6, 7, 8], [1, 2, 3], [9, 4, 10, 11, 12]):
            for step in steps:
                writer.put(
                    Rows(
                        Stream.SCALARS,
                        step=step,
                        epoch=None,
                        wall_time=1_700_000_000.0 + step,
                        columns={"name": ["loss", "acc"], "split": ["val"] * 2, "value": [1, 2]},
                    )
                )
            assert writer.flush()
    finally:
        writer.close()
    run = tmp_path / RUN
    before = _rows(run, Stream.SCALARS)
    compact_run(run)
    [merged] = (run / "scalars").iterdir()
    table = pq.read_table(merged)
    assert sorted(table.to_pylist(), key=lambda r: r["seq"]) == before  # seq values kept
    order = list(zip(table["step"].to_pylist(), table["seq"].to_pylist(), strict=True))
    assert order == sorted(order)
    meta = pq.ParquetFile(merged).metadata
    step_col = table.schema.get_field_index("step")
    ranges = []
    for g in range(meta.num_row_groups):
        assert meta.row_group(g).num_rows <= 4
        stats = meta.row_group(g).column(step_col).statistics
        ranges.append((stats.min, stats.max))
    assert meta.num_row_groups == 6 and ranges[0] == (1, 2) and ranges[-1] == (11, 12)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False))
    con = duckdb.connect()
    plan = con.execute(
        f"EXPLAIN ANALYZE SELECT sum(value) FROM '{merged}' WHERE step BETWEEN 5 AND 6"
    ).fetchall()[0][1]
    assert "Row Groups Scanned: 1 / 6" in plan
    found = con.execute(f"SELECT count(*) FROM '{merged}' WHERE step BETWEEN 5 AND 6")
    assert found.fetchone() == (4,)
