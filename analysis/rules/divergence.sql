-- rule: divergence
-- severity: error
-- title: Divergence
-- requires: scalars:$metric/train>=2
-- param: metric = 'loss'
-- param: ratio = 2.0
-- param: window = 5
-- seed: part 1 §4 (see whether the curves diverge), part 6 §4 (learning rate too large)
-- suggestion: Lower the learning rate (or add warm-up), clip gradients (torch.nn.utils.clip_grad_norm_), normalise the inputs, and check the loss for log(0) or division by zero.
-- The training loss diverged: it became NaN/Inf, or the median of its last `window`
-- points ended more than `ratio` times above the median of its first `window` points.
WITH train AS (
    SELECT run_id, step, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n
    FROM scalars
    WHERE name = $metric AND split = 'train'
),
first_bad AS (
    SELECT run_id, min(step) AS step, arg_min(CASE WHEN isnan(value) THEN 'NaN' WHEN value > 0 THEN '+Inf' ELSE '-Inf' END, step) AS what,
           count(*) AS bad_points, any_value(n) AS points
    FROM train WHERE NOT isfinite(value) GROUP BY run_id
),
levels AS (
    SELECT run_id,
           median(value) FILTER (WHERE i <= $window) AS start_level,
           median(value) FILTER (WHERE i > n - $window) AS end_level,
           max(step) AS last_step
    FROM train WHERE isfinite(value) GROUP BY run_id
)
SELECT run_id, $metric || '/train' AS subject, step,
       printf('training %s became %s at step %d (%d of %d points non-finite)',
              $metric, what, step, bad_points, points) AS message,
       json_object('first_nonfinite_step', step, 'value', what,
                   'nonfinite_points', bad_points, 'points', points)::VARCHAR AS evidence
FROM first_bad
UNION ALL
SELECT l.run_id, $metric || '/train', l.last_step,
       printf('training %s ended at %.4g, %.1fx its starting level %.4g',
              $metric, l.end_level, l.end_level / l.start_level, l.start_level),
       json_object('start_level', l.start_level, 'end_level', l.end_level,
                   'ratio', l.end_level / l.start_level, 'threshold', $ratio)::VARCHAR
FROM levels l
WHERE l.run_id NOT IN (SELECT run_id FROM first_bad)
  AND l.end_level > l.start_level + ($ratio - 1) * abs(l.start_level)
