"""Page values for the export benchmarks: the latency/size chart and a table per batch size.

Built from ``RunData.exports`` (the run's latest benchmark) and the run's findings:
a format that ``export_parity`` flagged is marked in its rows and ringed in the
chart, and the format ``export_summary`` picked as the fastest within tolerance at
a batch size gets a badge, but only where its latency interval is apart from every
other eligible format's (the rule names the ones that overlap; then no format is
called fastest). The p50 cell shows its 95 % interval. The page repeats the rules'
verdicts; it does not judge again. Numbers are formatted here, so the template only
lays them out; a value the benchmark could not measure is an empty cell, NaN is spelled
out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from reports.blocks import Chart, display_name, to_spec
from reports.data import RunData

if TYPE_CHECKING:
    from analysis import Finding

PARITY_RULE = "export_parity"
SUMMARY_RULE = "export_summary"


@dataclass(frozen=True)
class ExportRow:
    format: str
    status: str
    p50_ms: str
    p90_ms: str
    throughput: str
    size: str
    load_ms: str
    max_abs_diff: str
    max_rel_diff: str
    metric: str
    sparsity: str
    error: str
    flagged: bool
    """``export_parity`` found that this format changes the model's outputs or accuracy."""
    fastest: bool
    """``export_summary``'s pick at this batch size: fastest within tolerance, and no
    other eligible format's latency interval overlaps its own."""


@dataclass(frozen=True)
class BatchTable:
    batch_size: int
    rows: list[ExportRow]
    """Fastest first; formats that failed at this batch size last."""


@dataclass(frozen=True)
class RunExports:
    run_id: str
    name: str
    step: int
    environment: str
    metric_name: str
    chart: Chart | None
    tables: list[BatchTable]
    failed: list[tuple[str, str]]
    """(format, error) of the formats that failed before they could be timed."""


def export_block(
    run: RunData, findings: Sequence[Finding], ids: Iterator[str]
) -> RunExports | None:
    """The export section of ``run``, or None when it has no export benchmark."""
    rows = run.exports
    if rows is None or not rows.height:
        return None
    flagged = {f.subject for f in findings if f.rule == PARITY_RULE and f.subject}
    fastest = {
        (int(b["batch_size"]), str(b["format"]))
        for f in findings
        if f.rule == SUMMARY_RULE
        for b in f.evidence.get("per_batch_size") or []
        if isinstance(b, dict) and b.get("batch_size") is not None and b.get("tied") == []
    }
    records = rows.to_dicts()
    tables = []
    for batch, group in _by_batch(records):
        ordered = sorted(group, key=_fastest_first)
        marks = [(r["format"] in flagged, (batch, r["format"]) in fastest) for r in ordered]
        tables.append(BatchTable(batch, [_row(r, *m) for r, m in zip(ordered, marks, strict=True)]))
    untimed = [r for r in records if r["batch_size"] is None]
    failed = [(str(r["format"]), _first_line(r["error"])) for r in untimed]
    metric = next((str(r["metric_name"]) for r in records if r["metric_name"]), "")
    chart = _chart(records, flagged, ids)
    return RunExports(
        run_id=run.run_id,
        name=display_name(run.name, run.run_id),
        step=int(records[0]["step"]),
        environment=environment_line(records[0]["env"]),
        metric_name=metric,
        chart=chart,
        tables=tables,
        failed=failed,
    )


def environment_line(env: str | None) -> str:
    """``torch 2.14.1, onnxruntime 1.32.0, 2 threads on cpu (x86_64 (AVX2))`` from the JSON."""
    try:
        parsed = json.loads(env or "")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return "environment not recorded"
    parts = [f"torch {parsed.get('torch') or '?'}"]
    parts.append(f"onnxruntime {parsed.get('onnxruntime') or 'not installed'}")
    threads = parsed.get("threads")
    where = f"{parsed.get('device') or '?'} ({parsed.get('hardware') or '?'})"
    parts.append(f"{threads} thread{'s' if threads != 1 else ''} on {where}")
    inputs = parsed.get("inputs")
    if isinstance(inputs, list) and inputs:
        shapes = ", ".join(
            f"{'x'.join(str(d) for d in i.get('shape', []))} {i.get('dtype', '')}".strip()
            for i in inputs
            if isinstance(i, dict)
        )
        parts.append(f"example input {shapes}")
    return ", ".join(parts)


# -- pieces ---------------------------------------------------------------------------------


def _by_batch(records: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if r["batch_size"] is not None:
            groups.setdefault(int(r["batch_size"]), []).append(r)
    return sorted(groups.items())


def _fastest_first(r: dict[str, Any]) -> tuple[int, float]:
    p50 = r["latency_p50_ms"]
    timed = r["status"] == "ok" and p50 is not None and math.isfinite(p50)
    return (0, p50) if timed else (1, math.inf)


def _row(r: dict[str, Any], flagged: bool, fastest: bool) -> ExportRow:
    return ExportRow(
        format=str(r["format"]),
        status=str(r["status"] or ""),
        p50_ms=_latency(r),
        p90_ms=_num(r["latency_p90_ms"], ".3f"),
        throughput=_num(r["throughput"], ",.0f"),
        size=_size(r["size_bytes"]),
        load_ms=_num(r["load_time_ms"], ".1f"),
        max_abs_diff=_num(r["max_abs_diff"], ".2g"),
        max_rel_diff=_percent(r["max_rel_diff"]),
        metric=_num(r["metric_value"], ".4f"),
        sparsity=_percent(r["sparsity"]),
        error=_first_line(r["error"]),
        flagged=flagged,
        fastest=fastest,
    )


def _chart(records: list[dict[str, Any]], flagged: set[str], ids: Iterator[str]) -> Chart | None:
    from reports.charts.exports import latency_size_chart  # deferred: imports altair

    points = [
        {
            "format": str(r["format"]),
            "batch": str(r["batch_size"]),
            "size_kb": r["size_bytes"] / 1000.0,
            "p50_ms": r["latency_p50_ms"],
            "p90_ms": _finite_or_none(r["latency_p90_ms"]),
            "throughput": _num(r["throughput"], ",.0f"),
            "parity": f"{_num(r['max_abs_diff'], '.2g')}, {_percent(r['max_rel_diff'])}",
            "metric": _num(r["metric_value"], ".4f") or "not measured",
            "flagged": r["format"] in flagged,
        }
        for r in records
        if r["status"] == "ok" and _positive(r["latency_p50_ms"]) and _positive(r["size_bytes"])
    ]
    if not points:
        return None
    frame = pl.DataFrame(points, schema_overrides={"p90_ms": pl.Float64})
    left_out = sum(1 for r in records if r["batch_size"] is not None) - len(points)
    note = f"{left_out} row(s) not drawn: they failed or have no latency." if left_out else None
    spec = to_spec(latency_size_chart(points=frame))
    return Chart(next(ids), spec, note=note, topic="exports")


def _num(value: float | int | None, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return format(value, fmt)


def _latency(r: dict[str, Any]) -> str:
    """``0.071 [0.068, 0.075]``: the p50 and its 95 % interval (when one was measured)."""
    p50 = _num(r["latency_p50_ms"], ".3f")
    low, high = r.get("latency_ci_low_ms"), r.get("latency_ci_high_ms")
    if not p50 or low is None or high is None:
        return p50
    return f"{p50} [{_num(low, '.3f')}, {_num(high, '.3f')}]"


def _percent(value: float | None) -> str:
    """``8.03%``, ``1.6e-05%`` (float rounding stays visible), ``0%``, ``NaN``."""
    if value is None or not math.isfinite(value):
        return _num(value, "")
    if value == 0:
        return "0%"
    pct = value * 100
    return f"{pct:.2f}%" if abs(pct) >= 0.01 else f"{pct:.1e}%"


def _size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1000:
        return f"{n} B"
    return f"{n / 1000:,.1f} kB" if n < 1_000_000 else f"{n / 1_000_000:,.1f} MB"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _positive(value: float | int | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
