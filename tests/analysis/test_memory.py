"""Memory does not grow with the store (issue 19): a diagnosis of a store whose rows
would take several times the memory bound, loaded, stays under it.

The store: 3 runs of 4,000 steps x 84 parameters, 3M ``tensors`` rows (about 750 MB
as in-memory DuckDB rows at ~250 bytes a row, which is what the reader used to load at
open). The diagnosis runs in a fresh process with DuckDB's memory limit at 128 MB;
its peak RSS (the interpreter, torch-free imports and the query buffers) must stay
under 600 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.store_scale import KINDS, write_run

STEPS, PARAMS, RUNS = 4_000, 84, 3
LIMIT_MB = 600
"""The bound on the diagnosing process's peak RSS."""

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking
# parent (here pytest, itself over 1 GB after the suite's other tests) across exec.
_PROBE = """
import json, re, sys
from pathlib import Path
from analysis import diagnose, open_store
with open_store(sys.argv[1]) as store:
    tensors = store.sql("SELECT count(*) AS n FROM tensors")["n"][0]
    findings = len(diagnose(store).findings)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(json.dumps({"tensors": int(tensors), "findings": findings,
                  "peak_rss_mb": int(hwm.group(1)) / 1024}))
"""


def test_diagnosing_a_store_larger_than_memory_allows_keeps_rss_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = sum(write_run(tmp_path, f"sweep-{i}", STEPS, PARAMS, rng) for i in range(RUNS))
    assert rows == RUNS * STEPS * PARAMS * len(KINDS)
    loaded_mb = rows * 250 / 2**20
    assert loaded_mb > LIMIT_MB, "the store must not fit the bound if it were loaded"
    env = {**os.environ, "TELEMETRY_MEMORY_LIMIT": "128MB"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tensors"] == rows
    assert result["findings"] >= 0
    assert result["peak_rss_mb"] < LIMIT_MB, result
