-- The run's latest export benchmark (a run benchmarked twice shows its last one; the
-- same choice as the export rules: analysis/macros/exports.sql), as written: one row per
-- format and batch size, and one per format that failed outright.
SELECT format, batch_size, status, error, latency_p50_ms, latency_p90_ms, throughput,
       latency_ci_low_ms, latency_ci_high_ms, size_bytes, load_time_ms, max_abs_diff,
       max_rel_diff, metric_name, metric_value, sparsity, device, threads, env, step
FROM latest_exports()
WHERE run_id = $run_id
ORDER BY seq
