"""The asynchronous writer: bounded queue, one named thread, drops counted, never raised."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from store.records import Rows
from store.schema import Stream
from store.segments import write_segment
from store.writer import Writer, WriterState

from .read_back import read_stream, segment_files

RUN = "run-1"
T0 = 1_700_000_000.0
QUIET = {"flush_every_s": 3600.0, "heartbeat_every_s": 3600.0}  # flush only when told to


def scalars(step: int, n: int = 2, *, name: str = "loss") -> Rows:
    return Rows(
        Stream.SCALARS,
        step=step,
        epoch=None,
        wall_time=T0 + step,
        columns={
            "name": [f"{name}{i}" for i in range(n)],
            "split": ["train"] * n,
            "value": [step + i / 10 for i in range(n)],
        },
    )


def event(step: int, kind: str = "note") -> Rows:
    return Rows(
        Stream.EVENTS,
        step=step,
        epoch=None,
        wall_time=T0 + step,
        columns={"kind": [kind], "payload": [json.dumps({"step": step})]},
    )


def tensors(step: int) -> Rows:
    return Rows(
        Stream.TENSORS,
        step=step,
        epoch=1,
        wall_time=T0 + step,
        columns={"param": ["w", "b"], "kind": ["grad", "grad"], "norm": [1.0, 2.0]},
    )


@pytest.fixture
def make_writer(tmp_path: Path) -> Iterator[Callable[..., Writer]]:
    """Writers under ``tmp_path``, closed at the end of the test whatever happens."""
    made: list[Writer] = []

    def make(**kwargs: Any) -> Writer:
        options = {**QUIET, **kwargs}
        writer = Writer(tmp_path, options.pop("run_id", RUN), **options)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close(timeout=10)


def events_of(root: Path, kind: str) -> list[dict[str, Any]]:
    rows = read_stream(root / RUN, Stream.EVENTS).to_pylist()
    return [row for row in rows if row["kind"] == kind]


class FlakySink:
    """A filesystem whose first ``failures`` writes fail with ENOSPC."""

    def __init__(self, failures: int) -> None:
        self.failures_left = failures
        self.calls = 0

    def __call__(self, table: pa.Table, directory: Path, filename: str) -> object:
        self.calls += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            raise OSError(28, "No space left on device")
        return write_segment(table, directory, filename)


class BlockingSink:
    """A filesystem that hangs until ``release`` is set; ``entered`` says the thread is stuck."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, table: pa.Table, directory: Path, filename: str) -> object:
        self.entered.set()
        self.release.wait(30)
        return write_segment(table, directory, filename)


def test_round_trip_every_row_once_with_strictly_increasing_seq(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    writer = make_writer()
    expected: dict[Stream, list[tuple[int, Any]]] = {s: [] for s in Stream}
    for step in range(12):
        assert writer.put(scalars(step, n=3))
        expected[Stream.SCALARS] += [(step, f"loss{i}") for i in range(3)]
        if step % 4 == 0:
            assert writer.put(event(step))
            expected[Stream.EVENTS].append((step, "note"))
        if step % 3 == 0:
            assert writer.put(tensors(step))
            expected[Stream.TENSORS] += [(step, "w"), (step, "b")]
        if step in (4, 8):
            assert writer.flush()  # several segments per stream
    writer.close()

    run = tmp_path / RUN
    keys = {Stream.SCALARS: "name", Stream.EVENTS: "kind", Stream.TENSORS: "param"}
    all_seq: list[int] = []
    for stream, key in keys.items():
        table = read_stream(run, stream)
        assert sorted(zip(table["step"].to_pylist(), table[key].to_pylist(), strict=True)) == (
            sorted(expected[stream])
        )
        seq = table["seq"].to_pylist()
        assert all(a < b for a, b in zip(seq, seq[1:], strict=False)), stream
        assert set(table["run_id"].to_pylist()) == {RUN}
        all_seq += seq
    assert sorted(all_seq) == list(range(len(all_seq)))  # unique across streams, no gaps
    assert writer.rows_written == len(all_seq)
    assert writer.rows_dropped == 0
    assert len(list((run / "scalars").iterdir())) == 3


def test_values_and_envelope_survive_the_round_trip(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    writer = make_writer(rank=3, attempt=2)
    writer.put(tensors(5))
    writer.close()
    rows = read_stream(tmp_path / RUN, Stream.TENSORS).to_pylist()
    assert [(r["param"], r["norm"], r["rank"], r["attempt"], r["epoch"]) for r in rows] == [
        ("w", 1.0, 3, 2, 1),
        ("b", 2.0, 3, 2, 1),
    ]
    assert {p.name for p in (tmp_path / RUN / "tensors").iterdir()} == {"3-2-000000.parquet"}


def test_flush_publishes_before_close(make_writer: Callable[..., Writer], tmp_path: Path) -> None:
    writer = make_writer()
    writer.put(scalars(1))
    assert writer.flush() is True
    assert writer.state is WriterState.ACTIVE
    assert read_stream(tmp_path / RUN, Stream.SCALARS).num_rows == 2
    assert not any(name.startswith(".") or "/." in name for name in segment_files(tmp_path / RUN))


def test_flush_with_nothing_pending_writes_no_file(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    writer = make_writer()
    assert writer.flush() is True
    writer.close()
    assert not (tmp_path / RUN).exists() or segment_files(tmp_path / RUN) == []


def test_rows_of_length_zero_write_no_segment(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    writer = make_writer()
    writer.put(Rows(Stream.SCALARS, step=1, epoch=None, wall_time=T0, columns={"name": []}))
    writer.close()
    assert not (tmp_path / RUN / "scalars").exists()


def test_close_is_idempotent_and_stops_the_named_thread(
    make_writer: Callable[..., Writer],
) -> None:
    writer = make_writer(rank=4)
    name = f"telemetry-writer-{RUN}-4"
    [thread] = [t for t in threading.enumerate() if t.name == name]
    assert thread.is_alive() and thread.daemon
    writer.put(scalars(1))
    writer.close()
    assert writer.state is WriterState.CLOSED
    assert not thread.is_alive()
    writer.close()
    assert writer.state is WriterState.CLOSED
    assert writer.rows_written == 2
    assert writer.flush() is False
    assert writer.put(scalars(2)) is False


def test_full_queue_drops_and_counts_instead_of_blocking(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    sink = BlockingSink()
    writer = make_writer(sink=sink, max_queue=4, max_pending_rows=1)
    try:
        assert writer.put(scalars(0))  # the thread takes it, flushes, and hangs in the sink
        assert sink.entered.wait(10)
        accepted = [writer.put(scalars(step)) for step in range(1, 11)]
    finally:
        sink.release.set()
    assert accepted == [True] * 4 + [False] * 6
    writer.close()
    assert writer.rows_dropped == 6 * 2
    stored = read_stream(tmp_path / RUN, Stream.SCALARS)
    assert sorted(set(stored["step"].to_pylist())) == [0, 1, 2, 3, 4]
    [dropped] = events_of(tmp_path, "dropped")
    payload = json.loads(dropped["payload"])
    assert payload["rows"] == 12
    assert payload["reasons"] == {"queue_full": 12}


def test_failing_sink_never_raises_counts_warns_once_and_records_a_dropped_event(
    make_writer: Callable[..., Writer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="store.writer")
    sink = FlakySink(failures=2)
    writer = make_writer(sink=sink)

    assert writer.put(scalars(1, n=3))
    assert writer.put(event(1))
    assert writer.flush() is True  # both segments fail: scalars, then events
    assert sink.calls == 2
    assert writer.rows_dropped == 4
    assert writer.state is WriterState.ACTIVE
    assert events_of(tmp_path, "dropped") == []

    assert writer.put(scalars(2))
    assert writer.flush() is True  # the sink works again: the drops are recorded now
    assert writer.put(scalars(3))
    assert writer.flush() is True  # nothing new dropped: no second event
    writer.close()

    warnings = [r for r in caplog.records if r.name == "store.writer"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "No space left on device" in warnings[0].getMessage()

    [dropped] = events_of(tmp_path, "dropped")
    payload = json.loads(dropped["payload"])
    assert payload["rows"] == 4
    assert payload["reasons"] == {"OSError": 4}
    assert "No space left on device" in payload["last_error"]
    assert dropped["step"] == 2
    assert sorted(set(read_stream(tmp_path / RUN, Stream.SCALARS)["step"].to_pylist())) == [2, 3]
    assert writer.rows_dropped == 4


def test_failed_dropped_event_is_retried_until_it_is_on_disk(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    sink = FlakySink(failures=3)
    writer = make_writer(sink=sink)
    writer.put(scalars(1))
    writer.flush()  # scalars fail (2 rows), then the dropped event recording them
    writer.put(event(2))
    writer.flush()  # the events segment with the dropped event fails again: 1 more row
    writer.put(event(3))
    writer.flush()  # works
    writer.close()
    [dropped] = events_of(tmp_path, "dropped")
    payload = json.loads(dropped["payload"])
    assert payload["reasons"] == {"OSError": writer.rows_dropped}
    # the rows handed to the writer; the `dropped` event itself is retried, not counted
    assert payload["rows"] == writer.rows_dropped == 2 + 1


def test_a_producer_bug_is_counted_as_dropped_and_the_thread_goes_on(
    make_writer: Callable[..., Writer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="store.writer")
    writer = make_writer()
    bad = Rows(Stream.SCALARS, step=1, epoch=None, wall_time=T0, columns={"nmae": ["x", "y"]})
    assert writer.put(bad)
    assert writer.flush() is True
    assert writer.rows_dropped == 2
    assert "nmae" in caplog.text
    writer.put(scalars(2))
    writer.close()
    assert writer.state is WriterState.CLOSED
    assert read_stream(tmp_path / RUN, Stream.SCALARS).num_rows == 2
    [dropped] = events_of(tmp_path, "dropped")
    assert json.loads(dropped["payload"])["reasons"] == {"ValueError": 2}


def test_pending_rows_over_the_limit_are_flushed_without_being_asked(
    make_writer: Callable[..., Writer],
) -> None:
    published = threading.Event()

    def sink(table: pa.Table, directory: Path, filename: str) -> object:
        path = write_segment(table, directory, filename)
        published.set()
        return path

    writer = make_writer(sink=sink, max_pending_rows=5)
    for step in range(3):
        writer.put(scalars(step, n=2))
    assert published.wait(10)
    assert writer.segments_written >= 1


def test_heartbeat_events_are_written_while_the_run_is_alive(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    beat_at_step_7 = threading.Event()

    def sink(table: pa.Table, directory: Path, filename: str) -> object:
        path = write_segment(table, directory, filename)
        rows = table.to_pylist()
        if any(r.get("kind") == "heartbeat" and r["step"] == 7 for r in rows):
            beat_at_step_7.set()
        return path

    writer = make_writer(sink=sink, heartbeat_every_s=0.001, flush_every_s=0.005)
    writer.put(scalars(7))
    assert beat_at_step_7.wait(10)
    writer.close()
    beats = events_of(tmp_path, "heartbeat")
    assert beats
    assert all(json.loads(b["payload"]) == {} for b in beats)
    assert max(b["step"] for b in beats) == 7  # a heartbeat carries the last step seen


class _ThreadKiller(BaseException):
    """Not an Exception: the writer's per-segment handler does not stop it."""


def _dead_writer(
    make_writer: Callable[..., Writer],
) -> tuple[Writer, threading.Thread, threading.Event]:
    """A writer whose thread dies in the sink while a flush() from another thread waits."""

    def sink(table: pa.Table, directory: Path, filename: str) -> object:
        raise _ThreadKiller

    writer = make_writer(sink=sink)
    [thread] = [t for t in threading.enumerate() if t.name == f"telemetry-writer-{RUN}-0"]
    writer.put(scalars(1))
    returned = threading.Event()

    def flush() -> None:
        writer.flush(timeout=30)
        returned.set()

    threading.Thread(target=flush, name="test-flush", daemon=True).start()
    return writer, thread, returned


def test_a_dead_writer_thread_is_logged_and_refuses_later_puts(
    make_writer: Callable[..., Writer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="store.writer")
    writer, thread, _returned = _dead_writer(make_writer)
    thread.join(10)
    assert not thread.is_alive()
    assert writer.state is WriterState.FAILED
    assert writer.put(scalars(2)) is False
    assert writer.flush() is False
    writer.close()  # nothing to join; does not hang
    assert writer.state is WriterState.FAILED
    [record] = [r for r in caplog.records if r.name == "store.writer"]
    assert "stopped" in record.getMessage() and "_ThreadKiller" in record.getMessage()


def test_flush_returns_when_the_writer_thread_dies(make_writer: Callable[..., Writer]) -> None:
    _writer, _thread, returned = _dead_writer(make_writer)
    assert returned.wait(2)


def test_essential_rows_are_taken_even_when_the_queue_is_full(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    sink = BlockingSink()
    writer = make_writer(sink=sink, max_queue=2, max_pending_rows=1)
    try:
        assert writer.put(scalars(0))
        assert sink.entered.wait(10)
        assert writer.put(scalars(1)) and writer.put(scalars(2))
        assert writer.put(scalars(3)) is False  # full
        assert writer.rows_dropped == 2  # counted at once, before the thread sees it
        assert writer.put(event(3, "run_finished"), essential=True)
    finally:
        sink.release.set()
    writer.close()
    assert [e["step"] for e in events_of(tmp_path, "run_finished")] == [3]


def test_a_removed_run_directory_is_not_recreated_and_its_rows_are_counted(
    make_writer: Callable[..., Writer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    caplog.set_level(logging.WARNING, logger="store.writer")
    writer = make_writer()
    writer.put(scalars(1))
    assert writer.flush()
    shutil.rmtree(tmp_path / RUN)
    writer.put(scalars(2))
    writer.put(event(2))
    assert writer.flush()
    writer.close()
    assert not (tmp_path / RUN).exists()
    assert writer.rows_dropped == 2 + 1  # the scalars and the note
    [warning] = [r for r in caplog.records if r.name == "store.writer"]
    assert "FileNotFoundError" in warning.getMessage()


def test_flush_with_zero_timeout_asks_without_waiting(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    sink = BlockingSink()
    writer = make_writer(sink=sink)
    writer.put(scalars(1))
    try:
        assert writer.flush(timeout=0) is False  # asked; the write is still hanging
        assert sink.entered.wait(10)
    finally:
        sink.release.set()
    writer.close()
    assert read_stream(tmp_path / RUN, Stream.SCALARS).num_rows == 2


def test_the_final_event_stays_the_last_row_after_a_due_heartbeat_and_drops(
    make_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    sink = BlockingSink()
    writer = make_writer(sink=sink, max_queue=2, max_pending_rows=1, heartbeat_every_s=0.01)
    try:
        assert writer.put(scalars(0))
        assert sink.entered.wait(10)
        for step in range(1, 6):  # two fit, three are dropped for a full queue
            writer.put(scalars(step))
    finally:
        sink.release.set()
    writer.put(event(6, "run_finished"), essential=True)
    writer.close()
    rows = sorted(read_stream(tmp_path / RUN, Stream.EVENTS).to_pylist(), key=lambda r: r["seq"])
    kinds = [r["kind"] for r in rows]
    assert "dropped" in kinds and kinds[-1] == "run_finished", kinds
