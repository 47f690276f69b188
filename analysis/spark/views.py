"""The store's views as Spark temporary views, for users' own Spark SQL.

``register_views(spark, root)`` lists the store on the driver (``store.scan``: the
same files, and the same files left out, as ``open_store``) and registers, over the
segment files read with the stream's typed schema (a column an older writer did not
write reads as NULL; a newer writer's extra columns are left out):

* ``runs``, the stream views (``events``, ``scalars``, ``tensors``, ``activations``,
  ``samples``, ``modules``, ``system``, ``exports``, ``inputs``, ``predictions``), the
  views summing predictions (``confusion``, ``residuals``) and ``metric_goals``, with
  the columns of the DuckDB views (``analysis/views/*.sql``) in their order;
* the same semantics: a resumed run's replayed steps read from their latest attempt,
  a row without an epoch takes the epoch it belongs to (``tel.set_epoch``; the next
  scalar with an epoch at the same or a later step), an event payload that is not
  JSON reads as NULL, and a run's status is derived when the view is read.

This is Spark SQL, the one place where the project writes a second dialect: views,
not rules (the rules run in DuckDB on Spark's executors, ``analysis.spark.scheduling``).
``tests/analysis/test_spark_views.py`` compares every view with its DuckDB twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.store import (
    STALE_AFTER_S,
    SUMMARY_VIEWS,
    StoreError,
    Unreadable,
    malformed_payloads,
    view_sql,
)
from analysis.store import VIEWS as STREAM_VIEWS
from store.layout import parse_segment_name
from store.liveness import gone_runs, started_writers_sql
from store.location import RemotePath, StorePath, store_path
from store.metrics import default_goal_sql
from store.scan import list_store
from store.schema import SCHEMAS, Stream

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

VIEWS = ("runs", *STREAM_VIEWS, *SUMMARY_VIEWS, "metric_goals")
"""The views ``register_views`` registers (as ``open_store`` defines them)."""

LATEST_BY: dict[Stream, tuple[str, ...] | None] = {
    Stream.EVENTS: None,  # as written: every attempt's events
    Stream.SCALARS: ("step", "name", "split"),
    Stream.TENSORS: ("step", "param", "kind"),
    Stream.ACTIVATIONS: ("step", "module"),
    Stream.SAMPLES: ("step", "module", "what"),
    Stream.MODULES: (),  # the model summary of the latest attempt
    Stream.SYSTEM: ("step",),
    Stream.EXPORTS: None,
    Stream.INPUTS: ("step", "index"),
    Stream.PREDICTIONS: ("step", "split"),
}
"""Per stream, the key (beside run and rank) whose latest attempt a view keeps; None:
every row (``analysis/views/<stream>.sql``)."""


@dataclass(frozen=True)
class SparkViews:
    """What ``register_views`` registered: the views, and the entries it left out."""

    views: tuple[str, ...]
    unreadable: list[Unreadable]


def hadoop_url(path: StorePath) -> str:
    """``path`` as Spark's Hadoop filesystems name it: ``s3://`` is ``s3a://`` there."""
    text = str(path)
    return "s3a://" + text[len("s3://") :] if text.startswith("s3://") else text


def register_views(
    spark: SparkSession, root: str | Path | RemotePath, *, stale_after_s: float = STALE_AFTER_S
) -> SparkViews:
    """Register the store at ``root``'s views as temporary views of ``spark`` (see the
    module docstring); ``stale_after_s`` as ``open_store``'s: a run seen within it and
    not ended is ``running``, else ``crashed``. Replaces views of the same names.

    A store at an ``s3://`` URL is listed here (fsspec) and its files read by Spark as
    ``s3a://`` URLs, through the cluster's own Hadoop S3A connector (``hadoop-aws`` on
    its classpath; credentials and endpoint in its ``spark.hadoop.fs.s3a.*`` settings)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    path = store_path(root)
    if not path.is_dir():
        raise StoreError(f"no store at {str(path)!r}: not a directory of runs")
    listing = list_store(path)
    unreadable = listing.strays + [u for r in listing.runs for u in r.unreadable]
    for stream in Stream:
        files = [hadoop_url(p) for r in listing.runs for p in r.segments[stream]]
        schema = from_arrow_schema(SCHEMAS[stream])
        if files:
            frame = spark.read.schema(schema).parquet(*files)
        else:
            frame = spark.createDataFrame([], schema)
        frame.createOrReplaceTempView(f"_files_{stream.value}")
    resumed = sorted(
        {
            r.path.name
            for r in listing.runs
            for paths in r.segments.values()
            for p in paths
            if (seg := parse_segment_name(p.name)) is not None and seg.attempt > 0
        }
    )
    spark.createDataFrame([(r,) for r in resumed], "run_id string").createOrReplaceTempView(
        "_resumed"
    )
    spark.sql(
        f"SELECT CAST({float(stale_after_s)!r} AS DOUBLE) AS stale_after_s"
    ).createOrReplaceTempView("_settings")
    _view(spark, "_epoch_bounds", _EPOCH_BOUNDS)
    for stream in Stream:
        _view(spark, f"raw_{stream.value}", _raw(stream))
        _view(spark, stream.value, _latest(stream))
    _view(spark, "_run_metrics", _RUN_METRICS)
    writers = [tuple(r) for r in spark.sql(started_writers_sql("spark")).collect()]
    gone = [(run_id,) for run_id in gone_runs(writers)]
    spark.createDataFrame(gone, "run_id string").createOrReplaceTempView("_gone")
    _view(spark, "runs", _RUNS)
    _view(spark, "metric_goals", _metric_goals())
    for view in SUMMARY_VIEWS:  # plain SQL both dialects read
        _view(spark, view, view_sql(view))
    # Named as open_store names them (a small stream: one job).
    bad = spark.sql(
        f"SELECT run_id, count(*) AS n, array_sort(collect_set(kind)) AS kinds "
        f"FROM _files_events WHERE NOT ({_JSON}) GROUP BY run_id ORDER BY run_id"
    ).collect()
    unreadable += [malformed_payloads(path / r.run_id / "events", r.n, list(r.kinds)) for r in bad]
    return SparkViews(VIEWS, unreadable)


_JSON = "payload IS NULL OR payload = 'null' OR try_parse_json(payload) IS NOT NULL"
"""Where an event's payload is JSON, or null (DuckDB's ``json_valid``)."""


def _view(spark: SparkSession, name: str, sql: str) -> None:
    spark.sql(sql).createOrReplaceTempView(name)


_EPOCH_BOUNDS = """
WITH marks AS (
    SELECT run_id, step, max(epoch) AS epoch
    FROM _files_scalars WHERE epoch IS NOT NULL GROUP BY run_id, step
),
ends AS (
    SELECT *, lead(epoch) OVER (PARTITION BY run_id ORDER BY step) AS next_epoch FROM marks
)
SELECT run_id,
       transform(array_sort(collect_list(struct(step, epoch))), x -> x.step) AS bounds,
       transform(array_sort(collect_list(struct(step, epoch))), x -> x.epoch) AS epochs,
       max_by(epoch, step) AS last
FROM ends
WHERE NOT (next_epoch <=> epoch)
GROUP BY run_id
"""
"""``analysis.store._EPOCH_BOUNDS``: per run that logs epochs, the last step of each
epoch, that epoch, and the last one."""


def _raw(stream: Stream) -> str:
    """``raw_<stream>``: the files' rows, the epoch filled in (``Store._create_raw``)."""
    columns = []
    for field in SCHEMAS[stream]:
        if field.name == "epoch":
            columns.append(
                "coalesce(x.epoch, try_element_at(b.epochs, "
                "size(filter(b.bounds, s -> s < x.step)) + 1), b.last + 1) AS epoch"
            )
        elif stream is Stream.EVENTS and field.name == "payload":
            # NULL where it is not JSON, as DuckDB reads it (its json_valid)
            columns.append(
                f"CASE WHEN {_JSON.replace('payload', 'x.payload')} THEN x.payload END AS payload"
            )
        else:
            columns.append(f"x.`{field.name}`")
    return (
        f"SELECT {', '.join(columns)} FROM _files_{stream.value} x "
        "LEFT JOIN _epoch_bounds b ON b.run_id = x.run_id"
    )


def _latest(stream: Stream) -> str:
    """The stream's view: of a resumed run, the latest attempt per ``LATEST_BY`` key."""
    keys = LATEST_BY[stream]
    raw = f"raw_{stream.value}"
    if keys is None:
        return f"SELECT * FROM {raw}"
    partition = ", ".join(["run_id", "rank", *keys])
    names = ", ".join(f"`{f.name}`" for f in SCHEMAS[stream])
    return f"""
SELECT * FROM {raw} WHERE run_id NOT IN (SELECT run_id FROM _resumed)
UNION ALL
SELECT {names} FROM (
    SELECT *, max(attempt) OVER (PARTITION BY {partition}) AS _latest
    FROM {raw} WHERE run_id IN (SELECT run_id FROM _resumed)
) WHERE attempt = _latest
"""


_RUN_METRICS = """
SELECT run_id, name, split, min(value) AS lo, max(value) AS hi
FROM scalars WHERE NOT isnan(value) AND abs(value) != double('inf')
GROUP BY run_id, name, split
"""

_RUNS = """
WITH seen AS (
    SELECT run_id, rank, attempt,
           max(step) AS steps, min(wall_time) AS first_seen, max(wall_time) AS last_seen
    FROM (
        SELECT run_id, rank, attempt, step, wall_time FROM raw_events
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_scalars
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_tensors
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_system
    )
    GROUP BY run_id, rank, attempt
),
latest AS (
    SELECT run_id, steps FROM (
        SELECT run_id, attempt, steps, max(attempt) OVER (PARTITION BY run_id, rank) AS top
        FROM seen
    ) WHERE attempt = top
),
most AS (SELECT run_id, max(steps) AS steps FROM latest GROUP BY run_id),
activity AS (
    SELECT run_id,
           max(attempt) AS attempt,
           min(first_seen) AS started_at,
           max(last_seen) AS last_seen
    FROM seen GROUP BY run_id
),
lifecycle AS (
    SELECT run_id, attempt, kind, payload, wall_time FROM raw_events
    WHERE kind IN ('run_started', 'run_finished', 'run_failed')
),
started AS (
    SELECT run_id, min_by(payload, wall_time) AS payload
    FROM lifecycle WHERE kind = 'run_started' GROUP BY run_id
),
ended AS (
    SELECT e.run_id,
           max_by(e.kind, e.wall_time) AS kind,
           max_by(e.payload, e.wall_time) AS payload,
           max(e.wall_time) AS ended_at
    FROM lifecycle e JOIN activity a ON e.run_id = a.run_id AND e.attempt = a.attempt
    WHERE e.kind IN ('run_finished', 'run_failed')
    GROUP BY e.run_id
)
SELECT a.run_id,
       coalesce(get_json_object(s.payload, '$.name'), a.run_id) AS name,
       CASE
           WHEN e.kind = 'run_finished' THEN 'finished'
           WHEN e.kind = 'run_failed' THEN 'failed'
           WHEN a.run_id IN (SELECT run_id FROM _gone) THEN 'crashed'
           WHEN unix_micros(a.last_seen) >= unix_micros(current_timestamp())
                - CAST((SELECT stale_after_s FROM _settings) * 1e6 AS BIGINT) THEN 'running'
           ELSE 'crashed'
       END AS status,
       m.steps,
       a.attempt + 1 AS attempts,
       a.started_at,
       coalesce(e.ended_at, a.last_seen) AS ended_at,
       (unix_micros(coalesce(e.ended_at, a.last_seen)) - unix_micros(a.started_at)) / 1e6
           AS duration_s,
       coalesce(get_json_object(s.payload, '$.config'), '{}') AS config,
       CASE WHEN e.kind = 'run_failed'
            THEN concat(get_json_object(e.payload, '$.type'), ': ',
                        get_json_object(e.payload, '$.message'))
       END AS error
FROM activity a
LEFT JOIN started s ON s.run_id = a.run_id
LEFT JOIN ended e ON e.run_id = a.run_id
LEFT JOIN most m ON m.run_id = a.run_id
"""
"""``analysis/views/runs.sql`` (the digests' tables are DuckDB's runs-only shortcut:
Spark reads the rows)."""


def _metric_goals() -> str:
    """``analysis/views/metric_goals.sql``."""
    return f"""
WITH defined AS (
    SELECT run_id,
           get_json_object(payload, '$.name') AS name,
           max_by(get_json_object(payload, '$.goal'), wall_time) AS goal
    FROM raw_events
    WHERE kind = 'metric_defined'
      AND get_json_object(payload, '$.goal') IN ('min', 'max')
    GROUP BY 1, 2
),
logged AS (
    SELECT DISTINCT run_id, name FROM _run_metrics
)
SELECT coalesce(l.run_id, d.run_id) AS run_id,
       coalesce(l.name, d.name) AS name,
       coalesce(d.goal, {default_goal_sql("coalesce(l.name, d.name)", dialect="spark")}) AS goal,
       d.goal IS NOT NULL AS defined
FROM logged l FULL JOIN defined d ON l.run_id = d.run_id AND l.name = d.name
"""
