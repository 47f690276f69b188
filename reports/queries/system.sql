-- A row per optimizer step: the timing columns are null on a step that could not be timed,
-- the gradient norms (issue 16) on one without gradients and in stores written before them.
-- As lines of three charts (reports.system.summarize, reports.step_norms.summarize): the
-- step's data wait and compute ($parts), throughput, and the global gradient norm before
-- clipping and at the optimizer step ($norms; the second only when some step differs),
-- with how many steps were clipped and how many could be told.
WITH s AS (
    SELECT step, seq, step_time_s, data_time_s, compute_time_s, samples_per_s,
           grad_norm, grad_norm_step, clip_ratio,
           coalesce(compute_time_s, step_time_s - data_time_s) AS compute
    FROM system
    WHERE run_id = $run_id
    QUALIFY rank = min(rank) OVER ()
), n AS (
    SELECT step, seq, grad_norm AS pre, grad_norm_step AS stepped, clip_ratio,
           coalesce(isfinite(grad_norm), false) AND grad_norm > 0 AS pre_ok,
           coalesce(isfinite(grad_norm_step), false) AND grad_norm_step > 0 AS stepped_ok
    FROM s WHERE grad_norm IS NOT NULL
), counts AS (
    SELECT count(*) FILTER (WHERE stepped IS NOT NULL AND clip_ratio IS NOT NULL) AS clipped,
           count(*) FILTER (WHERE stepped IS NOT NULL AND isfinite(pre) AND isfinite(stepped))
               AS judged,
           count(*) FILTER (WHERE stepped IS NOT NULL AND (clip_ratio IS NOT NULL OR (
               pre_ok AND stepped_ok
               AND abs(stepped - pre) > $same * greatest(abs(pre), abs(stepped))))) AS changed
    FROM n
)
SELECT *, (SELECT clipped FROM counts) AS clipped, (SELECT judged FROM counts) AS judged
FROM (
    SELECT 'time' AS chart, $parts[1] AS line, step, seq, data_time_s AS value
    FROM s WHERE data_time_s IS NOT NULL
    UNION ALL
    SELECT 'time', $parts[2], step, seq, compute FROM s WHERE compute IS NOT NULL
    UNION ALL
    SELECT 'throughput', NULL, step, seq, samples_per_s FROM s WHERE samples_per_s IS NOT NULL
    UNION ALL
    SELECT 'norms', $norms[1], step, seq, pre FROM n
    UNION ALL
    SELECT 'norms', $norms[2], step, seq, stepped FROM n
    WHERE stepped IS NOT NULL AND (pre_ok OR stepped_ok) AND (SELECT changed FROM counts) > 0
)
