"""Apache Spark as the engine, for run histories beyond one machine.

Spark schedules the per-run analysis; it does not run the rules. Every rule
partitions by run, so the driver lists the runs, Spark spreads them over its
executors, each task opens its runs with the same DuckDB rules as local analysis
(``analysis.evaluation``) and returns their findings, and the driver gathers them in
the order one local evaluation gives: the findings are identical by construction,
and retries and stragglers are Spark's job (``analysis.spark.scheduling``). The rules
stay in one SQL dialect: transpiling them to Spark SQL was studied and found to
mistranslate silently.

For users' own SQL, ``register_views(spark, root)`` registers the store's views as
Spark temporary views (``analysis.spark.views``).

pyspark is imported by these modules only: ``pip install 'telemetry[spark]'``.
"""

from __future__ import annotations

from analysis.spark.query import SparkQueryError, SparkQueryTimeout, check_query, run_query
from analysis.spark.scheduling import SparkUnavailable, evaluate_on_spark, local_session
from analysis.spark.views import SparkViews, register_views

__all__ = [
    "SparkQueryError",
    "SparkQueryTimeout",
    "SparkUnavailable",
    "SparkViews",
    "check_query",
    "evaluate_on_spark",
    "local_session",
    "register_views",
    "run_query",
]
