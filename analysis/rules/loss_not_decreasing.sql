-- rule: loss_not_decreasing
-- severity: warning
-- title: Loss not decreasing
-- requires: scalars:$metric/train>=20
-- param: metric = 'loss'
-- param: warmup_frac = 0.1
-- param: window_frac = 0.2
-- param: min_decrease = 0.05
-- seed: part 1 §3 (Loss does not decrease), part 2 §5, part 6 §4
-- suggestion: Raise the learning rate or use an adaptive optimizer (Adam), check that the data and labels are right, and check that gradients reach every layer.
-- Compares the median training loss of the first and the last window (window_frac of the
-- points each, after skipping warmup_frac of them): a decrease smaller than min_decrease of
-- the first level means no meaningful progress. Medians make one noisy batch irrelevant.
-- Runs whose loss became non-finite are left to `divergence`.
WITH train AS (
    SELECT run_id, step, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n
    FROM scalars
    WHERE name = $metric AND split = 'train'
),
broken AS (
    SELECT DISTINCT run_id FROM train WHERE NOT isfinite(value)
),
windows AS (
    SELECT run_id,
           greatest(floor(any_value(n) * $window_frac), 3) AS w,
           floor(any_value(n) * $warmup_frac) AS skip
    FROM train GROUP BY run_id
),
levels AS (
    SELECT t.run_id,
           median(t.value) FILTER (WHERE t.i > w.skip AND t.i <= w.skip + w.w) AS first_level,
           median(t.value) FILTER (WHERE t.i > t.n - w.w) AS last_level,
           min(t.step) FILTER (WHERE t.i > w.skip) AS from_step,
           max(t.step) AS to_step,
           any_value(t.n) AS points
    FROM train t JOIN windows w USING (run_id)
    GROUP BY t.run_id
)
SELECT run_id,
       $metric || '/train' AS subject,
       to_step AS step,
       printf('training %s did not decrease meaningfully: median %.4g over the first window after warm-up, %.4g over the last (%+.1f%%, steps %d-%d)',
              $metric, first_level, last_level, 100 * (last_level / first_level - 1), from_step, to_step) AS message,
       json_object(
           'first_level', first_level, 'last_level', last_level,
           'relative_decrease', (first_level - last_level) / abs(first_level),
           'from_step', from_step, 'to_step', to_step, 'points', points,
           'min_decrease', $min_decrease
       )::VARCHAR AS evidence
FROM levels
WHERE run_id NOT IN (SELECT run_id FROM broken)
  AND first_level - last_level < $min_decrease * abs(first_level)
