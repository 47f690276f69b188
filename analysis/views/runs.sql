-- view: runs
-- One row per run. Status is derived at read time, never stored:
--   finished / failed  the latest attempt wrote run_finished / run_failed
--   crashed            otherwise, when a reader on the run's host knows its process is
--                      gone (_gone, filled at open: store.liveness)
--   running            otherwise, if something was written in the last stale_after_s seconds
--   crashed            otherwise (killed, lost power: heartbeats stopped)
WITH seen AS (
    -- Per writer (run, rank, attempt): how far it got and when it was seen, from its
    -- rows, or from its digest (store.digest; only on a store opened runs_only,
    -- for the writers whose digest is current: _writers is empty otherwise).
    SELECT run_id, rank, attempt,
           max(step) AS steps, min(wall_time) AS first_seen, max(wall_time) AS last_seen
    FROM (
        SELECT run_id, rank, attempt, step, wall_time FROM raw_events
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_scalars
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_tensors
        UNION ALL SELECT run_id, rank, attempt, step, wall_time FROM raw_system
    )
    GROUP BY run_id, rank, attempt
    UNION ALL
    SELECT run_id, rank, attempt, steps, first_seen, last_seen FROM _writers
),
-- steps: how far the latest attempt of each rank got. A run resumed from an older
-- checkpoint replays steps; the abandoned attempt's later steps do not count.
latest AS (
    SELECT run_id, max(steps) AS steps
    FROM seen
    GROUP BY run_id, rank, attempt
    QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank)
),
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
    UNION ALL SELECT run_id, attempt, kind, payload, wall_time FROM _lifecycle
),
started AS (
    SELECT run_id,
           arg_min(payload, wall_time) AS payload
    FROM lifecycle WHERE kind = 'run_started' GROUP BY run_id
),
ended AS (
    SELECT e.run_id,
           arg_max(e.kind, e.wall_time) AS kind,
           arg_max(e.payload, e.wall_time) AS payload,
           max(e.wall_time) AS ended_at
    FROM lifecycle e JOIN activity a ON e.run_id = a.run_id AND e.attempt = a.attempt
    WHERE e.kind IN ('run_finished', 'run_failed')
    GROUP BY e.run_id
)
SELECT a.run_id,
       coalesce(json_extract_string(s.payload, '$.name'), a.run_id) AS name,
       CASE
           WHEN e.kind = 'run_finished' THEN 'finished'
           WHEN e.kind = 'run_failed' THEN 'failed'
           WHEN a.run_id IN (SELECT run_id FROM _gone) THEN 'crashed'
           WHEN a.last_seen >= now() - to_seconds((SELECT stale_after_s FROM _settings)) THEN 'running'
           ELSE 'crashed'
       END AS status,
       (SELECT max(l.steps) FROM latest l WHERE l.run_id = a.run_id) AS steps,
       a.attempt + 1 AS attempts,
       a.started_at,
       coalesce(e.ended_at, a.last_seen) AS ended_at,
       epoch(coalesce(e.ended_at, a.last_seen) - a.started_at) AS duration_s,
       coalesce(json_extract(s.payload, '$.config'), '{}'::JSON)::VARCHAR AS config,
       CASE WHEN e.kind = 'run_failed'
            THEN json_extract_string(e.payload, '$.type') || ': '
                 || json_extract_string(e.payload, '$.message')
       END AS error
FROM activity a
LEFT JOIN started s USING (run_id)
LEFT JOIN ended e USING (run_id)
