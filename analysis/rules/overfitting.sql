-- rule: overfitting
-- severity: warning
-- title: Overfitting
-- requires: scalars:$metric/val>=4, scalars:$metric/train
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: min_rise = 0.05
-- param: min_z = 3.0
-- param: patience = 3
-- param: min_train_drop = 0.10
-- param: max_acc_gain = 0.1
-- seed: part 1 §3 (Train Loss down, Val Loss up), part 3 §3, part 6 §3
-- suggestion: Add regularisation (weight decay, dropout), more data or data augmentation, and keep the checkpoint of the best validation epoch (early stopping).
-- null: a healthy run's validation loss falls to a level and stays there (or keeps falling) while the training loss falls; what moves it up and down from one evaluation to the next is noise of its own size
-- false_alarms: none of the 23 healthy runs of the corpus's tuning half (budget: under 1 in 20 healthy runs); min_rise, min_z and max_acc_gain chosen on that half, measured on the held-out half (benchmarks/calibration.py)
-- The validation loss rose from its best and stayed up while the training loss kept
-- falling. All four must hold:
--   a smoothed best      the best is the lowest point of the validation curve after a
--                        running median of 3 evaluations (the first and last evaluation
--                        as they are): one lucky evaluation is not the level to compare
--                        against, a curve that falls steadily keeps its lowest point
--   a lasting rise       the median of the last `patience` evaluations, all of them after
--                        the best, is more than min_rise (5%) above it: a rise that lasts
--                        to the end is the symptom, one bad evaluation is not
--   above the noise      and more than min_z (3) robust sigmas of the curve's own noise
--                        above it (sigma = MAD of the second differences / (0.6745 sqrt 6),
--                        the Donoho-Johnstone estimate on differences that a steady trend
--                        leaves at zero: the rise itself must not pass for noise): a small
--                        validation set's jitter is not a trend
--   training fell        the training loss (median over the interval that ends at each
--                        evaluation) fell more than min_train_drop (10%) from the best
--                        evaluation to the last: the model kept fitting its training data
-- and, when a validation accuracy (`acc_metric`) is logged, it did not keep improving:
-- from the best evaluation to the last `patience`, it closed less than max_acc_gain (a
-- tenth) of its remaining gap to 100%. A loss that rises while accuracy climbs is the
-- model growing confident on the examples it gets wrong, not a worse model.
-- Thresholds are relative to the run's own best and noise, so the loss scale does not
-- matter; a sudden collapse of validation accuracy is `divergence`'s.
WITH val AS (  -- one value per step (ranks averaged; analysis/macros/curves.sql)
    SELECT * FROM val_curve($metric)
),
numbered AS (
    SELECT *,
           row_number() OVER w AS i,
           count(*) OVER (PARTITION BY run_id) AS n,
           lag(step) OVER w AS prev_step,
           smooth3(value, run_id, step) AS smooth,
           abs(value - 2 * lag(value) OVER w + lag(value, 2) OVER w) AS jump
    FROM val
    WINDOW w AS (PARTITION BY run_id ORDER BY step)
),
best AS (
    SELECT run_id,
           arg_min(step, smooth) AS best_step,
           arg_min(coalesce(prev_step, -1), smooth) AS before_best,
           arg_min(i, smooth) AS best_i,
           min(smooth) AS best_value,
           min(value) AS lowest_point,
           any_value(n) AS n,
           max(step) AS last_step,
           arg_max(value, step) AS final_value,
           arg_max(prev_step, step) AS before_last,
           coalesce(median(jump) / (0.6745 * sqrt(6)), 0) AS sigma
    FROM numbered GROUP BY run_id
),
tail AS (
    SELECT v.run_id, median(v.value) AS tail_value, min(v.step) AS tail_from
    FROM numbered v JOIN best b USING (run_id)
    WHERE v.i > b.n - $patience
    GROUP BY v.run_id
),
train AS (  -- one point per step: the mean of its rows (ranks, micro-batches)
    SELECT run_id, step, avg(value) AS value FROM scalars
    WHERE name = $metric AND split = 'train' AND isfinite(value)
    GROUP BY run_id, step
),
train_levels AS (  -- the training loss over the interval that ends at each val point
    SELECT b.run_id,
           median(t.value) FILTER (WHERE t.step > b.before_best AND t.step <= b.best_step) AS train_at_best,
           median(t.value) FILTER (WHERE t.step > b.before_last AND t.step <= b.last_step) AS train_final
    FROM best b JOIN train t USING (run_id)
    GROUP BY b.run_id
),
acc AS (  -- the validation accuracy at the best evaluation and over the last `patience`
    SELECT b.run_id,
           CASE WHEN max(a.value) > 1 THEN 100.0 ELSE 1.0 END AS scale,
           median(a.value) FILTER (WHERE a.step <= b.best_step AND a.step > b.before_best) AS acc_at_best,
           median(a.value) FILTER (WHERE a.step >= t.tail_from) AS acc_final
    FROM best b
    JOIN tail t USING (run_id)
    JOIN scalars a ON a.run_id = b.run_id AND a.name = $acc_metric AND a.split = 'val'
                  AND isfinite(a.value)
    GROUP BY b.run_id
)
SELECT b.run_id,
       $metric || '/val' AS subject,
       b.best_step AS step,
       printf('validation %s rose %.0f%% above its best (%.4g at step %d, smoothed over 3 evaluations) and stayed there for the last %d evaluations (median %.4g, %.1f noise sigmas above it) while training %s fell %.0f%% (%.4g -> %.4g)%s',
              $metric, 100 * (t.tail_value / b.best_value - 1), b.best_value, b.best_step,
              $patience, t.tail_value, (t.tail_value - b.best_value) / nullif(b.sigma, 0),
              $metric, 100 * (1 - l.train_final / l.train_at_best), l.train_at_best, l.train_final,
              CASE WHEN a.acc_final IS NULL THEN ''
                   ELSE printf('; validation %s %.4g -> %.4g', $acc_metric, a.acc_at_best, a.acc_final) END) AS message,
       json_object(
           'best_step', b.best_step, 'best_val', b.best_value, 'lowest_point', b.lowest_point,
           'final_val', b.final_value, 'tail_val_median', t.tail_value,
           'rise', t.tail_value / b.best_value - 1, 'noise_sigma', b.sigma,
           'rise_sigmas', (t.tail_value - b.best_value) / nullif(b.sigma, 0),
           'train_at_best', l.train_at_best, 'train_final', l.train_final,
           'gap_at_best', b.best_value - l.train_at_best,
           'gap_final', b.final_value - l.train_final,
           'val_acc_at_best', a.acc_at_best, 'val_acc_final', a.acc_final,
           'val_points_after_best', b.n - b.best_i,
           'min_rise', $min_rise, 'min_z', $min_z, 'patience', $patience,
           'min_train_drop', $min_train_drop, 'max_acc_gain', $max_acc_gain
       )::VARCHAR AS evidence
FROM best b
JOIN tail t USING (run_id)
JOIN train_levels l USING (run_id)
LEFT JOIN acc a USING (run_id)
WHERE b.best_i <= b.n - $patience
  AND t.tail_value > b.best_value + $min_rise * abs(b.best_value)
  AND t.tail_value > b.best_value + $min_z * b.sigma
  AND l.train_final < l.train_at_best - $min_train_drop * abs(l.train_at_best)
  AND (a.acc_final IS NULL OR a.acc_at_best IS NULL
       OR a.acc_final - a.acc_at_best < $max_acc_gain * (a.scale - a.acc_at_best))
