UNION ALL BY NAME
SELECT 'heatmap' AS chart, param, step, last_step, norm, lo, hi, n, bad
FROM cells JOIN spans USING (bucket)
UNION ALL BY NAME
SELECT 'bands' AS chart, param, min(step) AS step, min(min) AS lo, max(max) AS hi,
       favg(mean) AS mean, min(mean - std) AS std_lo, max(mean + std) AS std_hi,
       count(*)::UINTEGER AS n,
       bool_or(NOT coalesce(isfinite(mean) AND isfinite(std) AND isfinite(min)
                            AND isfinite(max), false)) AS bad,
       any_value(steps) AS steps
FROM spread JOIN band_buckets USING (step)
GROUP BY param, bucket
ORDER BY chart, param NULLS LAST, step, seq
