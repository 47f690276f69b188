"""Gradient accumulation: several ``log()`` calls in one optimizer step.

A loop that logs every micro-batch's loss writes several rows of one metric at one
step. The rules read one point per (run, metric, split, step): the mean of its rows.
So a run that logs every micro-batch gets exactly the findings of the same run
logging the step's mean once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analysis import diagnose, open_store
from tests.analysis import cases

MICRO_BATCHES = 4
SPREAD = (-0.3, 0.1, 0.25, -0.05)
"""Each micro-batch's loss relative to the step's mean (they sum to zero)."""


def _micro_batched(root: Path) -> None:
    """Rewrite every segment of training scalars under ``root``: each row becomes
    ``MICRO_BATCHES`` rows at its step whose mean is the row's value."""
    for path in root.rglob("scalars/*.parquet"):
        table = pq.read_table(path)
        train = pc.fill_null(pc.equal(table["split"], "train"), False)
        kept = table.filter(pc.invert(train))
        rows = table.filter(train)
        parts = []
        for offset in SPREAD:
            scale = pa.array([1.0 + offset] * rows.num_rows, pa.float64())
            value = pc.multiply(rows["value"], scale)
            parts.append(rows.set_column(rows.schema.get_field_index("value"), "value", value))
        merged = pa.concat_tables([kept, *parts]).sort_by([("step", "ascending")])
        seq = pa.array(range(merged.num_rows), pa.int64())
        merged = merged.set_column(merged.schema.get_field_index("seq"), "seq", seq)
        pq.write_table(merged.replace_schema_metadata(table.schema.metadata), path)


def _findings(root: Path) -> list[tuple[object, ...]]:
    with open_store(root) as store:
        return sorted(
            (f.rule, f.severity.value, f.run_id, f.subject, f.step, f.message)
            for f in diagnose(store).findings
        )


@pytest.mark.parametrize("rule_id", sorted(cases.POSITIVE))
def test_logging_every_micro_batch_gives_the_findings_of_logging_their_mean(
    rule_id: str, tmp_path: Path
) -> None:
    once = tmp_path / "once"
    cases.POSITIVE[rule_id](once).write()
    cases.NEGATIVE(once).write()
    micro = tmp_path / "micro"
    shutil.copytree(once, micro)
    _micro_batched(micro)
    with open_store(micro) as store:  # the rewrite did what it says
        rows = store.sql(
            "SELECT count(*) AS n FROM scalars WHERE split = 'train' GROUP BY run_id, name, step"
        )
    assert set(rows["n"].to_list()) <= {MICRO_BATCHES}
    assert _findings(micro) == _findings(once)
