-- macros: exports
-- The latest export benchmark of each run, its parity verdicts and its latency
-- comparisons, each defined once: the export rules, the report (reports/data.py) and
-- `telemetry export-bench`'s table read them, so they cannot disagree.

-- latest_exports(): the rows of the `exports` view (every column) that belong to each
-- run's latest export benchmark: its highest step, then its highest attempt, then its
-- lowest rank (a run benchmarked twice shows its last one).
CREATE OR REPLACE MACRO latest_exports() AS TABLE
    SELECT * FROM exports
    QUALIFY dense_rank() OVER (PARTITION BY run_id ORDER BY step DESC, attempt DESC, rank) = 1;

-- export_verdicts(exact_tolerance, lossy_tolerance, max_metric_drop): THE parity verdict,
-- one row per (run_id, format) of each run's latest benchmark. Parity is max |out - eager|
-- relative to max |eager| on one fixed batch (max_rel_diff). Formats meant to reproduce
-- eager (TorchScript, torch.export, ONNX Runtime) may differ by float rounding only: up
-- to exact_tolerance. Lossy formats (int8, fp16, bf16, pruned_*) change outputs by
-- design: judged by the task metric when there is one (a relative drop against eager's
-- above max_metric_drop, higher is better), else by lossy_tolerance. Non-finite outputs
-- always count; every format's metric is checked. `parity` is one of
--   baseline        eager itself
--   not measured    the format failed before its outputs could be compared
--   non-finite      NaN/Inf where eager is finite
--   metric drop     the task metric fell by more than max_metric_drop
--   outputs differ  max_rel_diff beyond the format's tolerance (and no metric to judge by)
--   ok              within every tolerance
-- and `parity_failed` is true for the three failures (what export_parity reports).
CREATE OR REPLACE MACRO export_verdicts(exact_tolerance, lossy_tolerance, max_metric_drop) AS TABLE
    WITH formats AS (
        SELECT run_id, any_value(step) AS step, format,
               any_value(max_abs_diff) AS max_abs_diff,
               any_value(max_rel_diff) AS max_rel_diff,
               any_value(metric_name) AS metric_name,
               any_value(metric_value) AS metric_value,
               bool_and(status <> 'ok') AS failed,
               format IN ('dynamic_int8', 'fp16', 'bf16') OR format LIKE 'pruned%' AS lossy
        FROM latest_exports()
        GROUP BY run_id, format
    ),
    judged AS (
        SELECT f.*,
               e.metric_value AS eager_metric,
               (e.metric_value - f.metric_value) / greatest(abs(e.metric_value), 1e-12) AS metric_drop
        FROM formats f
        LEFT JOIN formats e ON e.run_id = f.run_id AND e.format = 'eager'
    ),
    verdicts AS (
        SELECT *,
               CASE
                   WHEN format = 'eager' THEN 'baseline'
                   WHEN max_rel_diff IS NULL THEN 'not measured'
                   WHEN NOT isfinite(max_rel_diff) THEN 'non-finite'
                   WHEN metric_drop > max_metric_drop THEN 'metric drop'
                   WHEN NOT lossy AND max_rel_diff > exact_tolerance THEN 'outputs differ'
                   WHEN lossy AND metric_drop IS NULL AND max_rel_diff > lossy_tolerance
                       THEN 'outputs differ'
                   ELSE 'ok'
               END AS parity
        FROM judged
    )
    SELECT *, parity IN ('non-finite', 'metric drop', 'outputs differ') AS parity_failed
    FROM verdicts;

-- latency_overlap(a_low, a_high, b_low, b_high): whether two latency intervals (the 95 %
-- intervals of exports.timing) overlap, or one is unknown (rows written before issue 18
-- have none). Two formats are ranked against each other only when this is false.
CREATE OR REPLACE MACRO latency_overlap(a_low, a_high, b_low, b_high) AS
    coalesce(NOT (a_high < b_low OR b_high < a_low), true);

-- export_timings(): each timed row (status ok, a finite p50) of each run's latest
-- benchmark with eager's at the same batch size, and how it compares: `vs_eager` is
-- 'baseline' (eager), 'faster' or 'slower' (the intervals are apart), 'overlap' (they
-- overlap or one is unknown: no ranking), or null (eager was not timed at this batch
-- size); `speedup` = eager's p50 / this p50, only when the intervals are apart.
CREATE OR REPLACE MACRO export_timings() AS TABLE
    WITH timed AS (
        SELECT * FROM latest_exports() WHERE status = 'ok' AND isfinite(latency_p50_ms)
    )
    SELECT t.run_id, t.step, t.format, t.batch_size,
           t.latency_p50_ms AS p50_ms,
           t.latency_ci_low_ms AS ci_low_ms, t.latency_ci_high_ms AS ci_high_ms,
           e.latency_p50_ms AS eager_p50_ms,
           e.latency_ci_low_ms AS eager_ci_low_ms, e.latency_ci_high_ms AS eager_ci_high_ms,
           CASE
               WHEN t.format = 'eager' THEN 'baseline'
               WHEN e.format IS NULL THEN NULL
               WHEN latency_overlap(t.latency_ci_low_ms, t.latency_ci_high_ms,
                                    e.latency_ci_low_ms, e.latency_ci_high_ms) THEN 'overlap'
               WHEN t.latency_ci_high_ms < e.latency_ci_low_ms THEN 'faster'
               ELSE 'slower'
           END AS vs_eager,
           CASE
               WHEN t.format <> 'eager'
                    AND NOT latency_overlap(t.latency_ci_low_ms, t.latency_ci_high_ms,
                                            e.latency_ci_low_ms, e.latency_ci_high_ms)
                   THEN e.latency_p50_ms / t.latency_p50_ms
           END AS speedup
    FROM timed t
    LEFT JOIN timed e ON e.run_id = t.run_id AND e.batch_size = t.batch_size
                     AND e.format = 'eager';
