-- reports.heatmap.grid in the database: $shown parameters x $columns buckets of
-- consecutive steps. A bucket with a norm that cannot be drawn (NaN, Inf, null, <= 0) is a
-- `bad` cell holding the first such norm (labelled in Python); the others hold the norm
-- furthest from the parameter's median (on a log scale; the first such step on a tie),
-- their min, max and count. And reports.tensors.grad_bands: the $spread parameters'
-- statistics per bucket of their steps ($buckets at most), `bad` when one is not finite.
, buckets AS (
    SELECT step, (row_number() OVER (ORDER BY step) - 1) * $columns // count(*) OVER () AS bucket
    FROM (SELECT DISTINCT step FROM g)
), spans AS (
    SELECT bucket, min(step) AS step, max(step) AS last_step FROM buckets GROUP BY bucket
), shown AS (
    SELECT param, step, seq, norm, bucket,
           coalesce(isfinite(norm) AND norm > 0, false) AS drawable
    FROM g JOIN buckets USING (step)
    WHERE list_contains($shown, param)
), marked AS (
    SELECT param, bucket, arg_min_null(norm, (step, seq)) AS norm, count(*)::UINTEGER AS n
    FROM shown WHERE NOT drawable GROUP BY param, bucket
), drawn AS (
    SELECT param, bucket, step, norm, log10(norm) AS scaled
    FROM shown ANTI JOIN marked USING (param, bucket)
    WHERE drawable
), cells AS (
    SELECT param, bucket, arg_max(norm, (abs(scaled - median), -step)) AS norm,
           min(norm) AS lo, max(norm) AS hi, count(*)::UINTEGER AS n, false AS bad
    FROM drawn
    JOIN (SELECT param, median(scaled) AS median FROM drawn GROUP BY param) USING (param)
    GROUP BY param, bucket
    UNION ALL
    SELECT param, bucket, norm, NULL, NULL, n, true FROM marked
), spread AS (
    SELECT * FROM g WHERE list_contains($spread, param)
), band_buckets AS (
    SELECT step, count(*) OVER () AS steps,
           (row_number() OVER (ORDER BY step) - 1) * least($buckets, count(*) OVER ())
               // count(*) OVER () AS bucket
    FROM (SELECT DISTINCT step FROM spread)
)
