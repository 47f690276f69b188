"""The per-run analysis scheduled by Spark (``analysis.spark``).

The driver cuts the runs to evaluate into partitions (``partitions``); each task opens
its runs alone (``open_store(root, run_ids=...)``), evaluates them in batches as local
analysis does (``analysis.evaluation.evaluate_runs``) and returns Python objects
(findings, gaps, the runs' cache keys, the files its open left out), which PySpark
pickles back to the driver. A task whose runs cannot be evaluated together tries each
run alone; a run that still fails is reported as not evaluated by every rule, with the
executor's error, and the job goes on. Progress is reported per finished partition,
read from Spark's status tracker while the job runs.

Executors must be able to import this package and read the store's files (a shared
filesystem, or the object store the root names).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from analysis import cache as findings_cache
from analysis.evaluation import Evaluation, evaluate_runs, in_order
from analysis.findings import Finding, NotEvaluated
from analysis.rule import Rule
from analysis.store import Unreadable, open_store
from store.errors import TelemetryError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from analysis.store import Store

TASKS_PER_CORE = 4
"""Partitions per core of the cluster (``defaultParallelism``): small enough for a
straggler not to hold the job, large enough for one task's store open to pay off."""

POLL_S = 0.5
"""How often the driver reads the job's progress from Spark's status tracker."""


@dataclass(frozen=True)
class _Key:
    run_id: str
    key: str


@dataclass(frozen=True)
class _Failed:
    run_id: str


Record = Finding | NotEvaluated | _Key | _Failed | Unreadable
"""What a task returns, one object each."""


class SparkUnavailable(TelemetryError):
    """Spark cannot start here: pyspark is not installed, or it found no Java runtime
    (or no cluster at the master URL)."""


def local_session(
    master: str = "local[*]", conf: Mapping[str, str] | None = None, *, app: str = "telemetry"
) -> SparkSession:
    """A Spark session for ``telemetry analyze --engine spark`` and ``telemetry query
    --engine spark``: ``master`` (``local[*]``, ``spark://host:7077``, ``yarn``...) and
    ``conf`` as given; the Python workers run this interpreter unless
    ``spark.pyspark.python`` (or ``PYSPARK_PYTHON``) names another one that can import
    this package. Spark's console progress bar is off (the verbs report their own)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise SparkUnavailable(
            f"the Spark engine needs pyspark ({e}): pip install 'telemetry[spark]', "
            "and a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
        ) from e
    settings = dict(conf or {})
    python = settings.get("spark.pyspark.python")
    # PySpark starts its Python workers with $PYSPARK_PYTHON (default: python3), read
    # when the context is made; the config key alone reaches only spark-submit.
    if python is not None:
        os.environ["PYSPARK_PYTHON"] = python
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings.setdefault("spark.ui.showConsoleProgress", "false")
    if "spark.driver.extraJavaOptions" not in settings:  # Spark's start-up warnings off
        logging_conf = resources.files("analysis.spark").joinpath("log4j2.properties")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={logging_conf}"
    builder = SparkSession.builder.master(master).appName(app)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # PySparkRuntimeError, Py4JError: Java missing, bad master
        raise SparkUnavailable(
            f"cannot start Spark (master {master!r}): {type(e).__name__}: {e}; "
            "is a Java 17 runtime installed (java -version; JAVA_HOME)?"
        ) from e
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def partitions(run_ids: list[str], cores: int) -> list[list[str]]:
    """``run_ids`` cut into at most ``TASKS_PER_CORE * cores`` partitions of consecutive
    runs (sizes differing by one at most)."""
    n = max(1, min(len(run_ids), TASKS_PER_CORE * max(cores, 1)))
    size, extra = divmod(len(run_ids), n)
    out, at = [], 0
    for i in range(n):
        take = size + (i < extra)
        out.append(run_ids[at : at + take])
        at += take
    return [p for p in out if p]


def evaluate_on_spark(
    spark: SparkSession,
    store: Store,
    chosen: list[Rule],
    overrides: Mapping[str, Mapping[str, Any]],
    run_ids: list[str],
    *,
    statuses: Mapping[str, str] | None = None,
    rules_key: str | None = None,
    on_partition: Callable[[int, int], None] | None = None,
) -> tuple[Evaluation, dict[str, str]]:
    """The rules over ``run_ids`` of ``store``, evaluated on ``spark``'s executors: the
    ``Evaluation`` local analysis gives, in its order, and (with ``rules_key`` and
    ``statuses``) each evaluated run's findings-cache key from the files its task read.
    ``on_partition(done, total)`` is called as partitions finish. What the tasks' opens
    left out joins ``store.unreadable``."""
    found = Evaluation()
    if not run_ids:
        return found, {}
    sc = spark.sparkContext
    parts = partitions(run_ids, sc.defaultParallelism)
    task = _Task(
        str(store.path),
        chosen,
        {k: dict(v) for k, v in overrides.items()},
        {r: statuses[r] for r in run_ids} if statuses is not None else {},
        rules_key,
    )
    rdd = sc.parallelize(parts, len(parts)).mapPartitions(task)
    group = f"telemetry-analyze-{uuid.uuid4().hex}"
    sc.setJobGroup(group, f"telemetry analyze: {len(run_ids)} run(s)", interruptOnCancel=True)
    watcher = _Progress(sc, group, len(parts), on_partition)
    try:
        records: list[Record] = rdd.collect()
    finally:
        watcher.stop()
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    watcher.finish()
    keys: dict[str, str] = {}
    for record in records:
        if isinstance(record, Finding):
            found.findings.append(record)
        elif isinstance(record, NotEvaluated):
            found.not_evaluated.append(record)
        elif isinstance(record, _Key):
            keys[record.run_id] = record.key
        elif isinstance(record, _Failed):
            found.failed.add(record.run_id)
        elif record not in store.unreadable:
            store.unreadable.append(record)
    found.findings, found.not_evaluated = in_order(
        chosen, run_ids, found.findings, found.not_evaluated
    )
    return found, keys


@dataclass(frozen=True)
class _Task:
    """What each Spark task of one analysis needs (pickled to the executors): the
    store, the rules and their parameters, and for the findings cache the runs'
    statuses and the rules' key. Called with a partition's runs."""

    root: str
    chosen: list[Rule]
    overrides: Mapping[str, Mapping[str, Any]]
    statuses: Mapping[str, str]
    rules_key: str | None

    def __call__(self, batches: Iterable[list[str]]) -> Iterator[Record]:
        """The partition's runs together, or each alone when that fails."""
        run_ids = [r for batch in batches for r in batch]
        if not run_ids:
            return
        try:
            records = self.evaluate(run_ids)
        except Exception as e:  # noqa: BLE001  # one run may be at fault: try each alone
            if len(run_ids) == 1:
                records = _failed(self.chosen, run_ids[0], e)
            else:
                records = []
                for run_id in run_ids:
                    try:
                        records += self.evaluate([run_id])
                    except Exception as alone:  # noqa: BLE001  # reported, the job goes on
                        records += _failed(self.chosen, run_id, alone)
        yield from records

    def evaluate(self, run_ids: list[str]) -> list[Record]:
        """``run_ids`` opened alone and evaluated as local analysis does."""
        with open_store(self.root, run_ids=run_ids) as own:  # a path or a URL
            found = evaluate_runs(
                own, self.chosen, self.overrides, run_ids, None, runs=len(run_ids)
            )
            keys = {}
            if self.rules_key is not None:
                statuses = {r: self.statuses[r] for r in run_ids}
                keys = findings_cache.run_keys(own, statuses, self.rules_key)
            unreadable = list(own.unreadable)
        return [
            *found.findings,
            *found.not_evaluated,
            *(_Key(r, k) for r, k in keys.items()),
            *(_Failed(r) for r in sorted(found.failed)),
            *unreadable,
        ]


def _failed(chosen: list[Rule], run_id: str, error: BaseException) -> list[Record]:
    what = f"{type(error).__name__}: {error}"
    reason = f"the analysis of this run failed on Spark executor {socket.gethostname()}: {what}"
    return [*(NotEvaluated(rule.id, run_id, reason) for rule in chosen), _Failed(run_id)]


class _Progress:
    """Calls ``on_partition(done, total)`` as the job group's tasks finish, from a
    thread that polls Spark's status tracker (PySpark has no listener API)."""

    def __init__(
        self,
        sc: Any,
        group: str,
        total: int,
        on_partition: Callable[[int, int], None] | None,
    ) -> None:
        self._sc, self._group, self._total = sc, group, total
        self._on = on_partition
        self._told = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if on_partition is not None:
            self._thread = threading.Thread(target=self._poll, name="spark-progress", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(POLL_S):
            self._tell(self._finished())

    def _finished(self) -> int:
        tracker = self._sc.statusTracker()
        done = 0
        for job in tracker.getJobIdsForGroup(self._group):
            info = tracker.getJobInfo(job)
            for stage in info.stageIds if info is not None else ():
                stage_info = tracker.getStageInfo(stage)
                if stage_info is not None:
                    done += stage_info.numCompletedTasks
        return min(done, self._total)

    def _tell(self, done: int) -> None:
        if self._on is not None and done > self._told:
            self._told = done
            self._on(done, self._total)

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> None:
        """The job succeeded: every partition is done."""
        self._tell(self._total)
