-- ||update|| / ||weight|| per parameter and sampled step, next to the weight norm. max()
-- keeps a NaN (DuckDB orders it above every number), so it becomes a marker downstream.
-- As the lines of two charts (reports.tensors.weights), for reports.decimate.decimate_sql:
-- at most $max_lines parameters each, those in $first and then the others in order of
-- appearance (reports.series.pick_lines), with their points: $points[lines drawn]. Each
-- line is numbered for decimate_sql (see _GRAD_LINES).
WITH t AS (
    SELECT param, kind, step, seq, norm
    FROM tensors
    WHERE run_id = $run_id AND kind IN ('weight', 'update') AND rank = (
        SELECT min(rank) FROM tensors WHERE run_id = $run_id AND kind IN ('weight', 'update'))
), w AS (
    SELECT param, step, min(seq) AS seq,
           max(norm) FILTER (WHERE kind = 'weight') AS weight,
           max(norm) FILTER (WHERE kind = 'update') AS "update"
    FROM t
    GROUP BY param, step
), lines AS (
    SELECT chart, param, count(*) OVER (PARTITION BY chart) AS lines_total,
           row_number() OVER () AS line
    FROM (
        SELECT 'norms' AS chart, param, min((step, seq)) AS first
        FROM w WHERE weight IS NOT NULL GROUP BY param
        UNION ALL
        SELECT 'ratios', param, min((step, seq))
        FROM w WHERE weight IS NOT NULL AND "update" IS NOT NULL GROUP BY param
    )
    QUALIFY row_number() OVER (
        PARTITION BY chart ORDER BY NOT list_contains($first::VARCHAR[], param), first
    ) <= $max_lines
)
SELECT chart, line, param, step, seq,
       CASE chart WHEN 'norms' THEN weight ELSE "update" / weight END AS value,
       lines_total, ($points::BIGINT[])[least(lines_total, $max_lines)] AS points
FROM w JOIN lines USING (param)
WHERE weight IS NOT NULL AND (chart = 'norms' OR "update" IS NOT NULL)
