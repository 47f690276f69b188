-- view: metric_goals
-- One row per run and metric it logged (or defined): which way the metric improves.
--   goal     'min' (a loss), 'max' (an accuracy) or NULL (lr, grad_norm: no "best")
--   defined  true when the run said so (tel.define_metric: the latest metric_defined
--            event for the name), false when the name's words decide (store.metrics)
-- Every "best" value (telemetry runs, the report, the run comparison) and the rules
-- read a metric's direction from here.
WITH defined AS (
    SELECT run_id,
           json_extract_string(payload, '$.name') AS name,
           arg_max(json_extract_string(payload, '$.goal'), wall_time) AS goal
    FROM (
        SELECT run_id, kind, payload, wall_time FROM raw_events
        UNION ALL SELECT run_id, kind, payload, wall_time FROM _lifecycle
    )
    WHERE kind = 'metric_defined'
      AND json_extract_string(payload, '$.goal') IN ('min', 'max')
    GROUP BY ALL
),
logged AS (
    SELECT DISTINCT run_id, name FROM _run_metrics
)
SELECT run_id, name,
       coalesce(d.goal, metric_default_goal(name)) AS goal,
       d.goal IS NOT NULL AS defined
FROM logged l FULL JOIN defined d USING (run_id, name)
