"""The findings cache: each run's findings kept in the store, so that re-analysing a
store where one run of 1,000 changed evaluates that one run.

A run's entry is valid while three things are unchanged, folded into its ``key``:

- its segment set: the name, size and mtime of each segment file the store lists for
  it (a new segment, a compaction, a rewritten file each change it);
- the rules: every chosen rule's record (id, severity, SQL, header) and its parameters
  after overrides, and the code that evaluates them (the ``analysis`` package's own
  files, the package, schema and DuckDB versions). ``--set`` or an edited rule
  invalidates every entry;
- the run's status. A ``running`` run is never cached or served: its status, and the
  findings that read it, change with time alone (heartbeats stop, it is ``crashed``).

Caching per run is sound because no rule compares runs: every rule's query partitions
or groups by ``run_id`` and ``analysis.causes`` links findings within a run. A run's
entry holds its findings as linked (``caused_by``, and the pointer suggestions).

The cache is one Parquet file, ``<store>/.cache/findings.parquet``: the store's
listing skips names starting with ``.``, so readers never see it. It is replaced
whole (temporary file, then ``os.replace``); a reader sees the old or the new one.
A file that cannot be read, or of another layout, is ignored (and rewritten); a store
that cannot be written is analysed without one (logged at debug level). On object
storage the file is one object, replaced by one PUT; a segment's "mtime" there is
its object's modification time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.findings import FINDINGS_SCHEMA, Finding, NotEvaluated, Severity
from analysis.rule import Rule
from analysis.store import Store
from store.location import RemotePath, StorePath, parquet_bytes, read_table
from store.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
"""Under the store's root; a leading ``.`` keeps it out of the store's listing
(``store.scan.list_store``), where a run id can never start with one."""
CACHE_FILE = "findings.parquet"
CACHE_VERSION = 1
"""The file's layout; a file of another version is ignored."""
_VERSION_KEY = b"telemetry.findings_cache"

_SCHEMA = pa.schema(
    [
        ("entry", pa.string()),  # "run" (one per cached run, with its key), "finding", "gap"
        ("key", pa.string()),
        *(f for f in FINDINGS_SCHEMA if f.name != "run_id"),
        ("run_id", pa.string()),
        ("reason", pa.string()),  # a gap's (a NotEvaluated's)
    ],
    metadata={_VERSION_KEY: str(CACHE_VERSION).encode()},
)


@dataclass(frozen=True)
class Entry:
    """One run's cached result, valid for ``key``."""

    key: str
    findings: tuple[Finding, ...]
    not_evaluated: tuple[NotEvaluated, ...]


def cache_path(root: StorePath) -> StorePath:
    return root / CACHE_DIR / CACHE_FILE


def rules_digest(rules: Sequence[Rule], params: Mapping[str, Mapping[str, Any]]) -> str:
    """What the findings of an unchanged run depend on besides its rows: the rules in
    their order (``causes.link`` names the chosen rules' titles), each with its
    effective parameters, and the code that evaluates them."""
    h = hashlib.sha256(_code_digest().encode())
    for rule in rules:
        values = {**rule.params, **params.get(rule.id, {})}
        # repr, not JSON: 1 and 1.0 (an int and a float threshold) must differ
        h.update(repr(rule).encode())
        h.update(repr(sorted(values.items())).encode())
    return h.hexdigest()


def run_keys(store: Store, statuses: Mapping[str, str], rules: str) -> dict[str, str]:
    """Each run's key from its segment files, its status and ``rules`` (a
    ``rules_digest``); runs that are ``running`` get none (never cached)."""
    files: dict[str, list[str]] = {}
    gone: set[str] = set()
    for run_id, listed in store.run_files().items():
        for stream, path in listed:
            try:
                st = path.stat()
            except OSError:
                gone.add(run_id)  # since the store listed it: evaluate, do not cache
                continue
            line = f"{stream.value}/{path.name}\0{st.st_size}\0{st.st_mtime_ns}"
            files.setdefault(run_id, []).append(line)
    keys = {}
    for run_id, status in statuses.items():
        if status == "running" or run_id in gone:
            continue
        h = hashlib.sha256(f"{rules}\0{status}\0".encode())
        h.update("\n".join(sorted(files.get(run_id, []))).encode())
        keys[run_id] = h.hexdigest()
    return keys


def read(root: StorePath) -> dict[str, Entry]:
    """The entries of the store's cache file; none when there is none or it cannot be
    read (torn, foreign, another layout): the runs are evaluated and it is rewritten."""
    path = cache_path(root)
    try:
        table = read_table(path)
        if table.schema.metadata != _SCHEMA.metadata or not table.schema.equals(_SCHEMA):
            raise ValueError(f"not a findings cache of version {CACHE_VERSION}")
        return _entries(table.to_pylist())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as e:
        log.debug("ignoring the findings cache %s: %s", path, e)
        return {}


def write(root: StorePath, entries: Mapping[str, Entry]) -> bool:
    """Replace the store's cache file with ``entries``; False (logged at debug level)
    where the store cannot be written: the analysis stands without it."""
    path = cache_path(root)
    if isinstance(path, RemotePath):
        try:
            path.write_bytes(parquet_bytes(_table(entries), compression="zstd"))
            return True
        except Exception as e:  # object storage: any failure means "no cache this time"
            log.debug("not writing the findings cache %s: %s", path, e)
            return False
    tmp = path.with_name(f".{CACHE_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        pq.write_table(_table(entries), tmp, compression="zstd")
        os.replace(tmp, path)
        return True
    except OSError as e:
        log.debug("not writing the findings cache %s: %s", path, e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False


def _table(entries: Mapping[str, Entry]) -> pa.Table:
    # column by column, not dataclasses.asdict per row: 16,000 rows (1,000 runs) in
    # 30 ms instead of 600 ms
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}

    def add(**values: Any) -> None:
        for name, column in columns.items():
            column.append(values.get(name))

    for run_id, entry in entries.items():
        add(entry="run", key=entry.key, run_id=run_id)
        for f in entry.findings:
            add(
                entry="finding",
                rule=f.rule,
                severity=f.severity.value,
                run_id=run_id,
                subject=f.subject,
                step=f.step,
                message=f.message,
                suggestion=f.suggestion,
                evidence=json.dumps(f.evidence, default=repr, allow_nan=True),
                caused_by=f.caused_by,
            )
        for n in entry.not_evaluated:
            add(entry="gap", rule=n.rule, run_id=run_id, reason=n.reason)
    return pa.table(columns, schema=_SCHEMA)


def _entries(rows: Iterable[dict[str, Any]]) -> dict[str, Entry]:
    keys: dict[str, str] = {}
    findings: dict[str, list[Finding]] = {}
    gaps: dict[str, list[NotEvaluated]] = {}
    for row in rows:
        run_id, kind = row["run_id"], row["entry"]
        if kind == "run":
            keys[run_id] = row["key"]
        elif kind == "finding":
            findings.setdefault(run_id, []).append(
                Finding(
                    rule=row["rule"],
                    severity=Severity(row["severity"]),
                    run_id=run_id,
                    subject=row["subject"],
                    step=row["step"],
                    message=row["message"],
                    suggestion=row["suggestion"],
                    evidence=json.loads(row["evidence"]),
                    caused_by=row["caused_by"],
                )
            )
        elif kind == "gap":
            gaps.setdefault(run_id, []).append(NotEvaluated(row["rule"], run_id, row["reason"]))
        else:
            raise ValueError(f"unknown entry {kind!r}")
    return {
        run_id: Entry(key, tuple(findings.get(run_id, ())), tuple(gaps.get(run_id, ())))
        for run_id, key in keys.items()
    }


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The evaluating code: the ``analysis`` package's files (engine, causes, views,
    macros, rules), and the versions of the package, the store schema and DuckDB.
    Read once per process (~40 small files)."""
    h = hashlib.sha256(f"{CACHE_VERSION}\0{SCHEMA_VERSION}\0{duckdb.__version__}\0".encode())
    with contextlib.suppress(metadata.PackageNotFoundError):  # a checkout: its files say
        h.update(metadata.version("telemetry").encode())
    for name, data in sorted(_files(resources.files("analysis"), "")):
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _files(folder: Traversable, prefix: str) -> Iterable[tuple[str, bytes]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            if not entry.name.startswith(("_", ".")):  # __pycache__
                yield from _files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith((".py", ".sql")):
            yield f"{prefix}{entry.name}", entry.read_bytes()
