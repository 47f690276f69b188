"""Gather benchmarks/results/*.json into one markdown table of targets and figures.

Each benchmark writes its own JSON (``make bench`` runs them all first); this reads
whichever are present, prints the summary and writes ``benchmarks/results/SUMMARY.md``.
A figure is compared with its target (issue 7) where there is one.

    .venv/bin/python benchmarks/summary.py
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# (workload, arm) -> the target ratio of mean step time to no logging.
STEP_TARGETS = {
    ("cnn", "default"): 1.03,
    ("cnn", "full"): 1.10,
    ("resnet18", "default"): 1.03,
    ("resnet18", "full"): 1.20,
}
BYTES_PER_NUMBER = 4.0
WRITER_ROWS_PER_S = 1_000_000
# Issue 19's targets: ~100M tensors rows analysed within a minute and 2 GB; listing
# 10,000 runs, or 100 runs of 20k steps, within a second; the report of that sweep
# within a minute and 10 MB; re-analysis after one new run of 1,000 within 2 s.
ANALYZE_100M_S, ANALYZE_100M_MB = 60.0, 2048
SMALL_RUNS_S = 1.0
SWEEP_RUNS_S = 1.0
REPORT_S, REPORT_MB = 60.0, 10.0
INCREMENTAL_S = 2.0


def _load(results: Path, name: str) -> Any:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def rows(results: Path) -> Iterator[tuple[str, str, str, str]]:
    """(what, target, measured, verdict) for every figure found."""
    for workload in _load(results, "overhead") or []:
        name, device = workload["workload"], workload.get("device", "cpu")
        for arm, m in workload["arms"].items():
            if arm == "none":
                yield (
                    f"{name} ({device}) step time, no logging",
                    "-",
                    f"{m['mean_ms']:.2f} ms",
                    "-",
                )
                continue
            target = STEP_TARGETS.get((name, arm))
            measured = f"{m['ratio_mean']:.3f}x mean, {m['ratio_median']:.3f}x median"
            if m.get("ratio_steady") is not None:
                measured += f", {m['ratio_steady']:.3f}x mean after the dense start"
            yield (
                f"{name} ({device}) {arm}: step time vs none",
                f"<= {target:.2f}x" if target else "peer",
                measured,
                _verdict(m["ratio_mean"] <= target if target else None),
            )
            bpn = m.get("bytes_per_number")
            if bpn is not None:
                ours = arm != "tensorboard"
                yield (
                    f"{name} {arm}: bytes per stored number",
                    f"<= {BYTES_PER_NUMBER:g}" if ours else "peer",
                    f"{bpn:.2f}",
                    _verdict(bpn <= BYTES_PER_NUMBER) if ours else "-",
                )
    for r in _load(results, "interleaved") or []:
        base_arm = "full" if r["arm"] == "full" else "default"
        target = STEP_TARGETS.get((r["workload"], base_arm))
        yield (
            f"{r['workload']} ({r['device']}) {r['arm']}, interleaved in one process: "
            "step time vs the bare copy",
            f"<= {target:.2f}x" if target else "-",
            f"{r['ratio']:.3f}x mean, {r['median_ratio']:.3f}x median",
            _verdict(r["ratio"] <= target if target else None),
        )
    writer = _load(results, "writer")
    if writer:
        yield (
            f"writer: {writer['params']} params, {writer['rows']:,} tensors rows",
            f">= {WRITER_ROWS_PER_S:,} rows/s",
            f"{writer['rows_per_s']:,.0f} rows/s ({writer['bytes_per_row']:.1f} B/row)",
            _verdict(writer["rows_per_s"] >= WRITER_ROWS_PER_S),
        )
    scale = _load(results, "store_scale")
    for store in [*(scale or {}).get("stores", []), *(scale or {}).get("sweeps", [])]:
        yield from _store_rows(store)
    small = (scale or {}).get("small_runs") or {}
    for key, what in (
        ("runs_listing", "telemetry runs (run index and digests)"),
        ("runs_view", "runs view of a full open"),
    ):
        view = small.get(key, {})
        if "total_s" not in view:
            continue
        targeted = key == "runs_listing" and small["runs"] >= 10_000  # telemetry runs
        yield (
            f"{what} over {small['runs']:,} small runs",
            f"<= {SMALL_RUNS_S:g} s" if targeted else "-",
            f"{view['total_s']:.2f} s" + (_listing_notes(small) if key == "runs_listing" else ""),
            _verdict(view["total_s"] <= SMALL_RUNS_S) if targeted else "-",
        )
    incremental = _load(results, "incremental")
    if isinstance(incremental, dict) and "analyze_one_new_run_s" in incremental:
        yield (
            f"telemetry analyze after one new run of {incremental['runs']:,}",
            f"<= {INCREMENTAL_S:g} s",
            f"{incremental['analyze_one_new_run_s']:.1f} s "
            f"(--no-cache: {incremental['analyze_no_cache_s']:.1f} s)",
            _verdict(incremental["analyze_one_new_run_s"] <= INCREMENTAL_S),
        )
    spark = _load(results, "spark_engine")
    for key, what in (("small_runs", "small runs"), ("sweep", "runs of 20k steps")):
        part = (spark or {}).get(key) if isinstance(spark, dict) else None
        if part:
            yield (
                f"analyze --engine spark ({part['master']}) vs duckdb, {part['runs']:,} {what}",
                "same JSON",
                f"{part['spark_s']:.1f} s vs {part['duckdb_s']:.1f} s "
                f"({part['spark_over_duckdb']:.1f}x, the JVM's start included)",
                _verdict(part["identical_json"]),
            )
    remote = _load(results, "object_storage")
    if isinstance(remote, dict) and "verbs" in remote:
        for verb, part in remote["verbs"].items():
            yield (
                f"{verb} of {remote['runs']} runs on S3 (moto, 127.0.0.1) vs the same on disk",
                "same answer",
                f"{part['s3_s']:.2f} s vs {part['local_s']:.2f} s "
                f"({part['s3_s'] / part['local_s']:.1f}x)",
                _verdict(part["same_answer"]),
            )
    report = _load(results, "report_size")
    if isinstance(report, dict) and "report_bytes" in report:
        limit = report.get("limit_bytes", 5_000_000)
        yield (
            f"report of a {report['steps']:,}-step run with {report['params']} parameters",
            f"<= {limit / 1e6:g} MB",
            f"{report['report_bytes'] / 1e6:.2f} MB in {report['report_s']:.1f} s",
            _verdict(report["report_bytes"] <= limit),
        )


def _listing_notes(small: dict[str, Any]) -> str:
    first = small.get("runs_listing_first", {}).get("total_s")
    parsed = "" if first is None else f" (the first, parsing the whole index: {first:.2f} s)"
    return parsed + _cli(small)


def _cli(store: dict[str, Any]) -> str:
    """The command's own wall time, interpreter start and table output included."""
    cli = store.get("runs_cli_s")
    return "" if cli is None else f" (the command, table on stdout: {cli:.2f} s)"


def _store_rows(store: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """A synthetic store's figures: analyze (targets at ~100M rows), and for a sweep
    (``--sweep``) listing, a query and the report."""
    n = store["tensors_rows"]
    shape = f"{store['runs']} runs, {n:,} tensors rows"
    analyze = store.get("analyze", {})
    if "error" in analyze:
        yield (f"analyze {shape}", "-", f"error: {analyze['error']}", "-")
    else:
        target = n >= 90_000_000
        yield (
            f"analyze {shape}",
            f"<= {ANALYZE_100M_S:g} s, <= {ANALYZE_100M_MB} MB" if target else "(100M target)",
            f"{analyze['total_s']:.1f} s, {analyze['peak_rss_mb']:.0f} MB RSS",
            _verdict(
                analyze["total_s"] <= ANALYZE_100M_S and analyze["peak_rss_mb"] <= ANALYZE_100M_MB
            )
            if target
            else "-",
        )
    listing = store.get("runs_listing", {})
    if "total_s" in listing and "params" in store:
        yield (
            f"telemetry runs, {shape}",
            f"<= {SWEEP_RUNS_S:g} s",
            f"{listing['total_s']:.2f} s" + _cli(store),
            _verdict(listing["total_s"] <= SWEEP_RUNS_S),
        )
    query = store.get("query", {})
    if "total_s" in query:
        yield (
            f"query (max grad norm per run and param), {shape}",
            "-",
            f"{query['total_s']:.1f} s",
            "-",
        )
    report = store.get("report", {})
    if "total_s" in report:
        mb = report["page_bytes"] / 1e6
        yield (
            f"telemetry report, {shape}",
            f"<= {REPORT_S:g} s, <= {REPORT_MB:g} MB",
            f"{report['total_s']:.1f} s ({report['diagnose_s']:.1f} s diagnosing), {mb:.1f} MB",
            _verdict(report["total_s"] <= REPORT_S and mb <= REPORT_MB),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    lines = [
        f"# Benchmarks ({platform.machine()}, {platform.python_version()})",
        "",
        "| what | target | measured | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(args.results)]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "SUMMARY.md").write_text(text)


if __name__ == "__main__":
    main()
