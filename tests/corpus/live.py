"""Labelled runs as ``telemetry watch`` sees them while they train: cut at a share of
their steps, with no ending event, and read as ``running``.

A rule that weighs a run as a whole (``-- when: ended``) is not evaluated on a running
run; the others must not cry wolf on a healthy run at any point of its training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ENDINGS = pa.array(["run_finished", "run_failed"])


def cut_runs(store: Path, into: Path, run_ids: Iterable[str], share: float) -> Path:
    """Copy each run of ``run_ids`` from ``store`` into the store ``into`` with only the
    rows of its first ``share`` of steps and without its ending event; ``into``. The
    ``run_started`` payloads lose their ``process`` identity: the process that trained
    the run has ended (a stored corpus), and a reader on this host would call the run
    crashed at once (``store.liveness``) instead of running."""
    for run_id in run_ids:
        files = sorted((store / run_id).glob("*/*.parquet"))
        tables = {f: pq.read_table(f) for f in files}
        last = max((pc.max(t["step"]).as_py() or 0) for t in tables.values() if t.num_rows)
        cut = max(1, int(last * share))
        for f, t in tables.items():
            kept = t.filter(pc.less_equal(t["step"], cut))
            if f.parent.name == "events":
                kept = kept.filter(pc.invert(pc.is_in(kept["kind"], value_set=ENDINGS)))
                payloads = [
                    _anonymous(k, p)
                    for k, p in zip(
                        kept["kind"].to_pylist(), kept["payload"].to_pylist(), strict=True
                    )
                ]
                column = kept.schema.get_field_index("payload")
                kept = kept.set_column(column, "payload", pa.array(payloads, pa.string()))
            out = into / run_id / f.parent.name / f.name
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(kept, out)
    return into


def _anonymous(kind: str, payload: str | None) -> str | None:
    """A ``run_started`` payload without the process identity; others as they are."""
    if kind != "run_started" or payload is None:
        return payload
    body = json.loads(payload)
    body.pop("process", None)
    return json.dumps(body)
