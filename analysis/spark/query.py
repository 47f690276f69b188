"""One read-only Spark SQL query over the views ``register_views`` made
(``telemetry query ROOT --engine spark``).

Read-only as the DuckDB path is (``telemetry.commands.query``): the statement is
parsed by Spark's own parser and refused when any node of its plan is a command
(``CREATE``, ``DROP``, ``SET``, ``CACHE``, ``ADD JAR``...) or an ``INSERT``; reading
files by path in SQL (``parquet.`/etc/...```) is turned off on the session
(``spark.sql.runSQLOnFiles``). ``EXPLAIN`` of a query is allowed. The result comes
back to the driver as one Arrow table: Spark has no bounded stream of Arrow batches,
so narrow a large result (``WHERE``, ``LIMIT``) or let Spark write it.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

from store.errors import TelemetryError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession


class SparkQueryError(TelemetryError):
    """A query Spark refused or could not run, or one that is not read-only."""


class SparkQueryTimeout(SparkQueryError):
    """The query ran past its timeout and its jobs were cancelled."""


_REFUSED_NODES = ("InsertIntoStatement",)
"""Plan nodes that write and are not ``Command``\\ s in Catalyst."""


def check_query(spark: SparkSession, sql: str) -> None:
    """Refuse ``sql`` unless it is one query (or ``EXPLAIN`` of one); never runs it."""
    jvm = spark._jvm
    assert jvm is not None, "a classic (not Spark Connect) session"
    parser = spark._jsparkSession.sessionState().sqlParser()
    try:
        plan = parser.parsePlan(sql)
    except Exception as e:  # Py4JJavaError wrapping Spark's ParseException
        raise SparkQueryError(_message(e)) from e
    command = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    if plan.getClass().getSimpleName() == "ExplainCommand":
        plan = plan.logicalPlan()
    for node in _nodes(plan):
        kind = node.getClass().getSimpleName()
        if command.isInstance(node) or kind in _REFUSED_NODES:
            raise SparkQueryError(
                f"telemetry query is read-only: {kind} is refused; write a SELECT over "
                "the views (and -o FILE to save its result)"
            )


def _nodes(plan: Any) -> list[Any]:
    out, todo = [], [plan]
    while todo:
        node = todo.pop()
        out.append(node)
        children = node.children()
        todo += [children.apply(i) for i in range(children.size())]
    return out


def run_query(spark: SparkSession, sql: str, *, timeout: float | None = None) -> pa.Table:
    """``sql`` (checked by ``check_query``) as an Arrow table; after ``timeout``
    seconds its jobs are cancelled (``SparkQueryTimeout``)."""
    spark.conf.set("spark.sql.runSQLOnFiles", "false")
    check_query(spark, sql)
    sc = spark.sparkContext
    group = f"telemetry-query-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "telemetry query", interruptOnCancel=True)
    expired = threading.Event()

    def cancel() -> None:
        expired.set()
        sc.cancelJobGroup(group)

    timer = threading.Timer(timeout, cancel) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return spark.sql(sql).toArrow()
    except Exception as e:  # AnalysisException, a cancelled job, an executor's error
        if expired.is_set():
            raise SparkQueryTimeout(
                f"the query ran past --timeout {timeout:g} s and its Spark jobs were "
                "cancelled; narrow it (WHERE, LIMIT) or give it more time"
            ) from e
        raise SparkQueryError(_message(e)) from e
    finally:
        if timer is not None:
            timer.cancel()
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]


def _message(e: Exception) -> str:
    """Spark's message, without the JVM stack trace."""
    text = str(getattr(e, "desc", None) or e)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    kept = [line for line in lines if not line.lstrip().startswith(("at ", "JVM stacktrace"))]
    return "\n".join(kept[:12])
