-- rule: export_summary
-- severity: info
-- title: Fastest export format
-- requires: exports
-- param: exact_tolerance = 0.01
-- param: lossy_tolerance = 0.1
-- param: max_metric_drop = 0.01
-- seed: part 5 §3 (TorchScript, deployment), part 5 §4 (pruning, quantization, ONNX), part 5 §1 (saving and loading)
-- suggestion: Deploy the fastest format that keeps the outputs (and the accuracy) of the eager model at the batch size you serve; measure again on the target machine, since thread count and CPU features change the ranking.
-- null: advice, not an alarm: every run with an export benchmark gets one (info)
-- false_alarms: info only: never a warning or error
-- One finding per run with an export benchmark (its latest one): for each batch size,
-- the format with the lowest p50 latency among those that ran and stay within the
-- tolerances of export_parity (same parameters and defaults; override both rules
-- alike), and its speed-up over eager. The subject is the winner at the smallest
-- batch size; the evidence lists every batch size and the formats that failed.
WITH latest AS (  -- each run's latest export benchmark (analysis/macros/exports.sql)
    SELECT * FROM latest_exports()
),
formats AS (
    SELECT run_id, format,
           any_value(max_rel_diff) AS max_rel_diff,
           any_value(metric_value) AS metric_value,
           bool_and(status <> 'ok') AS failed,
           format IN ('dynamic_int8', 'fp16', 'bf16') OR format LIKE 'pruned%' AS lossy
    FROM latest
    GROUP BY run_id, format
),
eligible AS (  -- the negation of export_parity's condition: within every tolerance
    SELECT f.run_id, f.format
    FROM formats f
    LEFT JOIN formats e ON e.run_id = f.run_id AND e.format = 'eager'
    WHERE isfinite(f.max_rel_diff)
      AND coalesce((e.metric_value - f.metric_value) / greatest(abs(e.metric_value), 1e-12)
                   <= $max_metric_drop, true)
      AND (f.format = 'eager'
           OR (NOT f.lossy AND f.max_rel_diff <= $exact_tolerance)
           OR (f.lossy AND (f.metric_value IS NOT NULL AND e.metric_value IS NOT NULL
                            OR f.max_rel_diff <= $lossy_tolerance)))
),
best AS (
    SELECT l.run_id, l.batch_size,
           any_value(l.step) AS step,
           arg_min(l.format, l.latency_p50_ms) AS format,
           min(l.latency_p50_ms) AS p50_ms,
           any_value(x.latency_p50_ms) AS eager_p50_ms,
           count(*) AS eligible_formats
    FROM latest l
    JOIN eligible USING (run_id, format)
    LEFT JOIN latest x ON x.run_id = l.run_id AND x.batch_size = l.batch_size
                      AND x.format = 'eager' AND x.status = 'ok'
    WHERE l.status = 'ok' AND isfinite(l.latency_p50_ms)
    GROUP BY l.run_id, l.batch_size
),
per_run AS (
    SELECT run_id,
           max(step) AS step,
           arg_min(format, batch_size) AS subject,
           string_agg(printf('batch %d: %s %.3g ms (%.1fx eager''s %.3g ms)',
                             batch_size, format, p50_ms, eager_p50_ms / p50_ms, eager_p50_ms),
                      '; ' ORDER BY batch_size) AS fastest,
           to_json(list(json_object('batch_size', batch_size, 'format', format,
                                    'p50_ms', p50_ms, 'eager_p50_ms', eager_p50_ms,
                                    'speedup', eager_p50_ms / p50_ms,
                                    'eligible_formats', eligible_formats)
                        ORDER BY batch_size)) AS per_batch
    FROM best
    GROUP BY run_id
),
counts AS (
    SELECT run_id, count(*) AS measured,
           coalesce(list(format ORDER BY format) FILTER (WHERE failed), []) AS failed
    FROM formats GROUP BY run_id
)
SELECT p.run_id,
       p.subject,
       p.step,
       printf('fastest export within tolerance, %s; %d formats measured, %d failed%s',
              p.fastest, c.measured, len(c.failed),
              CASE WHEN len(c.failed) > 0 THEN ' (' || array_to_string(c.failed, ', ') || ')' ELSE '' END) AS message,
       json_object('per_batch_size', p.per_batch, 'formats_measured', c.measured,
                   'failed', c.failed,
                   'exact_tolerance', $exact_tolerance, 'lossy_tolerance', $lossy_tolerance,
                   'max_metric_drop', $max_metric_drop)::VARCHAR AS evidence
FROM per_run p JOIN counts c USING (run_id)
