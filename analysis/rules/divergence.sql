-- rule: divergence
-- severity: error
-- title: Divergence
-- requires: scalars:$metric/train>=2 | scalars:$metric/val>=2 | scalars:$acc_metric/val>=3
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: ratio = 2.0
-- param: window = 5
-- param: collapse = 0.5
-- param: min_level = 0.5
-- seed: part 1 §4 (see whether the curves diverge), part 6 §4 (learning rate too large)
-- suggestion: Lower the learning rate (or add warm-up), clip gradients (torch.nn.utils.clip_grad_norm_), normalise the inputs, and check the loss for log(0) or division by zero.
-- null: a healthy run's loss stays finite and ends below (at worst near) where it started, and its validation accuracy never falls to half of the level it had reached
-- false_alarms: none of the 23 healthy runs of the corpus's tuning half (budget: under 1 in 100 healthy runs: an error says the run is broken); no run there collapses, so `collapse` is set from the symptom (most of what was learned is lost), far below the deepest healthy dip of validation accuracy under its smoothed best on that half (to 0.93 of it)
-- The run diverged: one finding per run, the first of these that holds.
--   non-finite       the loss became NaN/Inf (training, or validation for a run that logs
--                    no training loss: an evaluation-only or imported log)
--   blew up          the median of its last `window` points ended more than `ratio` (2x)
--                    above the median of its first `window` points
--   collapsed        the validation accuracy (`acc_metric`, one point per evaluation) fell
--                    to at most `collapse` (half) of the best it had reached before, that
--                    best being at least min_level (half-way to 100%): a sudden loss of
--                    most of what the model had learned (a full validation pass is not
--                    noisy enough to halve by chance). The best is read on the curve
--                    smoothed by a running median of 3 evaluations (the three nearest at
--                    the ends), so one lucky evaluation does not set it. The message
--                    says whether the run recovered, and how far, by its end.
WITH split_used AS (  -- the training loss, else the validation loss (evaluation-only logs)
    SELECT run_id,
           CASE WHEN count(*) FILTER (WHERE split = 'train') >= 2 THEN 'train' ELSE 'val' END AS split
    FROM scalars WHERE name = $metric AND split IN ('train', 'val')
    GROUP BY run_id
),
series AS (
    SELECT run_id, split, step, avg(value) AS value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n
    FROM scalars JOIN split_used USING (run_id, split)
    WHERE name = $metric
    GROUP BY run_id, split, step
),
first_bad AS (
    SELECT run_id, any_value(split) AS split, min(step) AS step,
           arg_min(CASE WHEN isnan(value) THEN 'NaN' WHEN value > 0 THEN '+Inf' ELSE '-Inf' END, step) AS what,
           count(*) AS bad_points, any_value(n) AS points
    FROM series WHERE NOT isfinite(value) GROUP BY run_id
),
levels AS (
    SELECT run_id, any_value(split) AS split,
           median(value) FILTER (WHERE i <= $window) AS start_level,
           median(value) FILTER (WHERE i > n - $window) AS end_level,
           max(step) AS last_step
    FROM series WHERE isfinite(value) GROUP BY run_id
),
blown AS (
    SELECT * FROM levels
    WHERE run_id NOT IN (SELECT run_id FROM first_bad)
      AND end_level > start_level + ($ratio - 1) * abs(start_level)
),
acc AS (  -- analysis/macros/curves.sql
    SELECT * FROM val_curve($acc_metric)
),
smoothed AS (
    SELECT *,
           CASE WHEN max(value) OVER (PARTITION BY run_id) > 1 THEN 100.0 ELSE 1.0 END AS scale,
           smooth3(value, run_id, step) AS smooth
    FROM acc
),
best_before AS (
    SELECT *,
           max(smooth) OVER (PARTITION BY run_id ORDER BY step ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS best,
           arg_max(step, smooth) OVER (PARTITION BY run_id ORDER BY step ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS best_step
    FROM smoothed
),
collapses AS (  -- the first evaluation at or under `collapse` of the best before it
    SELECT c.run_id, min(c.step) AS step, arg_min(c.value, c.step) AS fell_to,
           arg_min(c.best, c.step) AS best, arg_min(c.best_step, c.step) AS best_step,
           any_value(c.scale) AS scale
    FROM best_before c
    WHERE c.best >= $min_level * c.scale AND c.value <= $collapse * c.best
    GROUP BY c.run_id
),
collapsed AS (
    SELECT c.*, arg_max(a.value, a.step) AS final_value, max(a.step) AS last_step,
           min(a.step) FILTER (WHERE a.step > c.step AND a.value > $collapse * c.best) AS recovered_step
    FROM collapses c JOIN acc a ON a.run_id = c.run_id AND a.step >= c.step
    GROUP BY ALL
)
SELECT run_id, $metric || '/' || split AS subject, step,
       printf('%s %s became %s at step %d (%d of %d points non-finite)',
              CASE WHEN split = 'train' THEN 'training' ELSE 'validation' END,
              $metric, what, step, bad_points, points) AS message,
       json_object('series', split, 'first_nonfinite_step', step, 'value', what,
                   'nonfinite_points', bad_points, 'points', points)::VARCHAR AS evidence
FROM first_bad
UNION ALL
SELECT run_id, $metric || '/' || split, last_step,
       printf('%s %s ended at %.4g, %.1fx its starting level %.4g',
              CASE WHEN split = 'train' THEN 'training' ELSE 'validation' END,
              $metric, end_level, end_level / start_level, start_level),
       json_object('series', split, 'start_level', start_level, 'end_level', end_level,
                   'ratio', end_level / start_level, 'threshold', $ratio)::VARCHAR
FROM blown
UNION ALL
SELECT run_id, $acc_metric || '/val', step,
       printf('validation %s collapsed from %.4g (step %d, smoothed over 3 evaluations) to %.4g at step %d%s',
              $acc_metric, best, best_step, fell_to, step,
              CASE WHEN final_value <= $collapse * best
                   THEN printf(' and had not recovered by the end (%.4g at step %d)', final_value, last_step)
                   WHEN recovered_step IS NOT NULL
                   THEN printf('; it came back above half of that level at step %d and ended at %.4g', recovered_step, final_value)
                   ELSE '' END),
       json_object('series', 'val', 'metric', $acc_metric, 'best_before', best,
                   'best_step', best_step, 'collapsed_to', fell_to, 'collapse_step', step,
                   'final_value', final_value, 'recovered_step', recovered_step,
                   'recovered', final_value > $collapse * best,
                   'collapse', $collapse, 'min_level', $min_level * scale)::VARCHAR
FROM collapsed
WHERE run_id NOT IN (SELECT run_id FROM first_bad) AND run_id NOT IN (SELECT run_id FROM blown)
