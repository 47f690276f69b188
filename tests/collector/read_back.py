"""Read a run's segments back the way a plain Parquet reader would: no analysis package."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from store.compaction import live_segments
from store.schema import SCHEMAS, Stream


def read_stream(run_dir: Path, stream: Stream) -> pa.Table:
    """Every live segment of ``stream`` in ``run_dir``, in segment order, as one table."""
    live, _covered = live_segments(run_dir / stream.value)
    ordered = sorted(live, key=lambda path: live[path])
    tables = [pq.read_table(path) for path in ordered]
    if not tables:
        return SCHEMAS[stream].empty_table()
    return pa.concat_tables(tables)


def segment_files(run_dir: Path) -> list[str]:
    """Every file under ``run_dir`` (temporary ones included), as sorted relative paths."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
