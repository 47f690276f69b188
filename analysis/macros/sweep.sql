-- macros: sweep
-- A sweep's table, defined once: the `sweep` view (the best validation loss) and
-- `telemetry sweep --metric` (any logged metric) read it.

-- sweep_of(metric_name, metric_split, goal): one row per run and hyperparameter of its
-- config, flattened (`opt.lr` for {"opt": {"lr": ...}}; a list is one value, its JSON
-- text; nulls and empty objects are left out): `key`, `value` (as text: 'sgd', '0.1',
-- 'true', '[64,64]'; deeper than 16 levels: left out), `number` (the value when it is a JSON number, else NULL), and the
-- run's outcome: `outcome`, the best finite value of the metric (lowest for goal 'min',
-- highest for 'max'; NULL when it never logged a finite one), `status` (the runs view's)
-- and `diverged` (the metric, or the training loss, went NaN/Inf).
CREATE OR REPLACE MACRO sweep_of(metric_name, metric_split, goal) AS TABLE
    WITH RECURSIVE metric AS (
        SELECT run_id,
               min(value) FILTER (WHERE isfinite(value)) AS lo,
               max(value) FILTER (WHERE isfinite(value)) AS hi,
               bool_or(NOT isfinite(value)) AS nonfinite
        FROM scalars
        WHERE name = metric_name AND split IS NOT DISTINCT FROM metric_split
        GROUP BY run_id
    ),
    train_loss AS (
        SELECT run_id, bool_or(NOT isfinite(value)) AS nonfinite
        FROM scalars WHERE name = 'loss' AND split = 'train'
        GROUP BY run_id
    ),
    -- the config flattened level by level (json_transform to a map: one parse per
    -- object; json_tree held every node's document: a GiB for 40 runs of 2,000 keys)
    tree(run_id, key, j, depth) AS (
        SELECT run_id, NULL::VARCHAR, config::JSON, 0 FROM runs
        UNION ALL
        SELECT run_id, CASE WHEN key IS NULL THEN k ELSE key || '.' || k END, v, depth + 1
        FROM (
            SELECT run_id, key, depth, unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v
            FROM (
                SELECT run_id, key, depth, json_transform(j, '"MAP(VARCHAR, JSON)"') AS m
                FROM tree WHERE json_type(j) = 'OBJECT' AND depth < 16
            )
        )
    ),
    params AS (
        SELECT run_id, key, json_type(j) AS type, j::VARCHAR AS raw
        FROM tree
        WHERE key IS NOT NULL AND json_type(j) NOT IN ('OBJECT', 'NULL')
    )
    SELECT r.run_id, r.name, p.key,
           CASE WHEN p.type = 'VARCHAR' THEN json_extract_string(p.raw, '$') ELSE p.raw END AS value,
           CASE WHEN p.type IN ('DOUBLE', 'BIGINT', 'UBIGINT', 'HUGEINT') THEN TRY_CAST(p.raw AS DOUBLE) END AS number,
           CASE WHEN goal = 'max' THEN m.hi ELSE m.lo END AS outcome, r.status,
           coalesce(m.nonfinite, false) OR coalesce(l.nonfinite, false) AS diverged
    FROM runs r
    JOIN params p ON p.run_id = r.run_id
    LEFT JOIN metric m ON m.run_id = r.run_id
    LEFT JOIN train_loss l ON l.run_id = r.run_id;
