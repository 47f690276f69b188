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
-- the format with the lowest p50 latency among those that ran and pass export_parity's
-- verdict (export_verdicts in analysis/macros/exports.sql, same parameters and
-- defaults; override both rules alike). A ranking is claimed only where the latency
-- intervals support it (latency_overlap, export_timings): a speed-up over eager only
-- when the two 95 % intervals are apart, and the formats whose intervals overlap the
-- winner's are named as not distinguishable from it. The subject is the winner at the
-- smallest batch size when nothing ties with it there (else null: no single fastest);
-- the evidence lists every batch size and the formats that failed.
WITH verdicts AS (
    SELECT * FROM export_verdicts($exact_tolerance, $lossy_tolerance, $max_metric_drop)
),
timed AS (  -- the eligible formats' timed rows, with eager's at the same batch size
    SELECT t.*
    FROM export_timings() t
    JOIN verdicts v USING (run_id, format)
    WHERE v.parity IN ('baseline', 'ok')
),
winners AS (
    SELECT run_id, batch_size, arg_min(format, p50_ms) AS format, count(*) AS eligible_formats
    FROM timed
    GROUP BY run_id, batch_size
),
best AS (
    SELECT w.run_id, w.batch_size, w.eligible_formats, b.step, b.format, b.p50_ms,
           b.ci_low_ms, b.ci_high_ms, b.eager_p50_ms, b.vs_eager, b.speedup,
           coalesce(list(o.format ORDER BY o.p50_ms)
                    FILTER (WHERE o.format IS NOT NULL), []) AS tied
    FROM winners w
    JOIN timed b ON b.run_id = w.run_id AND b.batch_size = w.batch_size AND b.format = w.format
    LEFT JOIN timed o ON o.run_id = w.run_id AND o.batch_size = w.batch_size
                     AND o.format <> w.format
                     AND latency_overlap(o.ci_low_ms, o.ci_high_ms, b.ci_low_ms, b.ci_high_ms)
    GROUP BY ALL
),
described AS (
    SELECT *,
           printf('batch %d: %s %.3g ms', batch_size, format, p50_ms)
           || CASE
                  WHEN vs_eager = 'faster' THEN
                      printf(' (%.1fx eager''s %.3g ms)', speedup, eager_p50_ms)
                  WHEN vs_eager = 'baseline' THEN ' (no export format is faster)'
                  WHEN vs_eager = 'overlap' THEN
                      printf(' (not faster than eager''s %.3g ms beyond the noise: intervals overlap)',
                             eager_p50_ms)
                  ELSE ''
              END
           || CASE
                  WHEN len(list_filter(tied, lambda f: f <> 'eager')) > 0 THEN
                      printf(', not distinguishable from %s (intervals overlap)',
                             array_to_string(list_filter(tied, lambda f: f <> 'eager'), ', '))
                  ELSE ''
              END AS text
    FROM best
),
per_run AS (
    SELECT run_id,
           max(step) AS step,
           arg_min(format, batch_size) AS first_format,
           arg_min(len(tied), batch_size) AS first_ties,
           string_agg(text, '; ' ORDER BY batch_size) AS fastest,
           to_json(list(json_object('batch_size', batch_size, 'format', format,
                                    'p50_ms', p50_ms, 'ci_low_ms', ci_low_ms,
                                    'ci_high_ms', ci_high_ms, 'eager_p50_ms', eager_p50_ms,
                                    'vs_eager', vs_eager, 'speedup', speedup,
                                    'tied', tied, 'eligible_formats', eligible_formats)
                        ORDER BY batch_size)) AS per_batch
    FROM described
    GROUP BY run_id
),
counts AS (
    SELECT run_id, count(*) AS measured,
           coalesce(list(format ORDER BY format) FILTER (WHERE failed), []) AS failed
    FROM verdicts GROUP BY run_id
)
SELECT p.run_id,
       CASE WHEN p.first_ties = 0 THEN p.first_format END AS subject,
       p.step,
       printf('fastest export within tolerance, %s; %d formats measured, %d failed%s',
              p.fastest, c.measured, len(c.failed),
              CASE WHEN len(c.failed) > 0 THEN ' (' || array_to_string(c.failed, ', ') || ')' ELSE '' END) AS message,
       json_object('per_batch_size', p.per_batch, 'formats_measured', c.measured,
                   'failed', c.failed,
                   'exact_tolerance', $exact_tolerance, 'lossy_tolerance', $lossy_tolerance,
                   'max_metric_drop', $max_metric_drop)::VARCHAR AS evidence
FROM per_run p JOIN counts c USING (run_id)
