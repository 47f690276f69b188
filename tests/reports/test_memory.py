"""Peak memory in the system section: GiB over steps against the device's total and 90 % of
it, a line per rank, linked from memory_pressure, absent where no peak was recorded."""

from __future__ import annotations

from pathlib import Path

from analysis import diagnose, open_store
from reports import memory, render_report
from reports.budget import Budget
from tests.builders import RunBuilder
from tests.reports.pages import Parts, datasets, marks, trained

GIB = 2**30


def _run(
    root: Path,
    run_id: str,
    peaks: list[int | None],
    *,
    started: dict[str, object] | None = None,
    rank: int = 0,
) -> None:
    run = RunBuilder(root, run_id, started=started, rank=rank)
    run.scalars("loss", "train", [2.0 - 0.01 * i for i in range(len(peaks))])
    run.system([0.1] * len(peaks), [0.01] * len(peaks), max_memory_bytes=peaks)
    run.finish().write()


def test_the_peaks_read_once_a_second_are_drawn_in_gib_against_the_device(
    tmp_path: Path,
) -> None:
    peaks = [2 * GIB, None, None, 3 * GIB, None, 6 * GIB]  # null between the reads
    _run(tmp_path, "r", peaks, started={"device": "cuda:0", "memory_total_bytes": 80 * GIB})
    got = memory.read(open_store(tmp_path), "r", Budget())
    assert got is not None
    assert got.series.points.select("rank", "step", "gib").rows() == [
        (0, 1, 2.0),
        (0, 4, 3.0),
        (0, 6, 6.0),
    ]
    assert (got.total_gib, got.device, got.peak_gib) == (80.0, "cuda:0", 6.0)
    assert got.limits.select("limit", "gib").rows() == [("total", 80.0), ("share", 72.0)]
    assert got.limits["label"].to_list() == [
        "cuda:0 memory: 80.00 GiB",
        "90% (memory_pressure): 72.00 GiB",
    ]
    assert got.subtitle == "peak 6.00 GiB of 80.00 GiB cuda:0 memory (8 %)"


def test_on_the_cpu_the_total_is_the_machines_ram(tmp_path: Path) -> None:
    _run(tmp_path, "r", [GIB, 2 * GIB], started={"device": "cpu", "memory_total_bytes": 8 * GIB})
    got = memory.read(open_store(tmp_path), "r", Budget())
    assert got is not None and got.against == "host RAM"
    assert got.subtitle == "peak 2.00 GiB of 8.00 GiB host RAM (25 %)"


def test_a_run_recorded_before_the_total_draws_its_peak_without_rules(tmp_path: Path) -> None:
    _run(tmp_path, "r", [GIB, 2 * GIB])
    got = memory.read(open_store(tmp_path), "r", Budget())
    assert got is not None and got.total_gib is None
    assert got.limits.height == 0
    assert got.subtitle == "peak 2.00 GiB (device not recorded)"


def test_each_rank_is_a_line_and_only_the_highest_peaks_are_drawn(tmp_path: Path) -> None:
    for rank in range(memory.MAX_RANKS + 2):
        _run(tmp_path, "ddp", [GIB * (1 + rank), GIB * (2 + rank)], rank=rank)
    got = memory.read(open_store(tmp_path), "ddp", Budget())
    assert got is not None
    drawn = sorted(set(got.series.points["rank"].to_list()))
    assert drawn == list(range(2, memory.MAX_RANKS + 2)), "the two lowest peaks are left out"
    assert got.series.note == "Lines for 8 of 10 ranks (those with the highest peaks)"


def test_no_peak_recorded_reads_as_none(tmp_path: Path) -> None:
    trained(tmp_path)
    assert memory.read(open_store(tmp_path), "r1", Budget()) is None


def test_memory_pressure_links_to_the_memory_chart_with_its_two_rules(tmp_path: Path) -> None:
    peaks = [int(60 * GIB + i * GIB) for i in range(20)]  # 60 .. 79 GiB of 80
    _run(tmp_path, "full", peaks, started={"device": "cuda:0", "memory_total_bytes": 80 * GIB})
    store = open_store(tmp_path)
    diagnosis = diagnose(store)
    assert "memory_pressure" in {f.rule for f in diagnosis.findings}
    parts = Parts(render_report(store, diagnosis))
    assert "system" in parts.sections
    [spec] = [s for s in parts.chart_specs() if "peak memory" in str(s.get("title"))]
    rules = [r for r in datasets(spec) if "limit" in r]
    assert sorted((r["limit"], r["gib"]) for r in rules) == [("share", 72.0), ("total", 80.0)]
    assert max(r["gib"] for r in datasets(spec) if "rank" in r) == 79.0
    assert any(m["type"] == "rule" for m in marks(spec))
    memory_id = next(a["data-chart"] for a, body in parts.scripts if "peak memory" in body)
    links = [a["href"] for t, a in parts.tags if t == "a" and a.get("class") == "evidence"]
    assert f"#{memory_id}" in links
    assert "Evidence: peak memory" in parts.plain_text
