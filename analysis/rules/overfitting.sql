-- rule: overfitting
-- severity: warning
-- title: Overfitting
-- requires: scalars:$metric/val>=4, scalars:$metric/train
-- param: metric = 'loss'
-- param: min_rise = 0.10
-- param: patience = 3
-- param: min_train_drop = 0.10
-- seed: part 1 §3 (Train Loss down, Val Loss up), part 3 §3, part 6 §3
-- suggestion: Add regularisation (weight decay, dropout), more data or data augmentation, and keep the checkpoint of the best validation epoch (early stopping).
-- Fires when the validation loss has risen from its best by more than min_rise (mean
-- of its last `patience` points, relative to the best) while the training loss kept
-- falling by more than min_train_drop over the same stretch. Thresholds are relative
-- to the run's own best, so the loss scale does not matter.
WITH val AS (
    SELECT run_id, step, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n,
           lag(step) OVER (PARTITION BY run_id ORDER BY step) AS prev_step
    FROM scalars
    WHERE name = $metric AND split = 'val' AND isfinite(value)
),
best AS (
    SELECT run_id,
           arg_min(step, value) AS best_step,
           arg_min(coalesce(prev_step, -1), value) AS before_best,
           arg_min(i, value) AS best_i,
           min(value) AS best_value,
           any_value(n) AS n,
           max(step) AS last_step,
           arg_max(value, step) AS final_value,
           arg_max(prev_step, step) AS before_last
    FROM val GROUP BY run_id
),
tail AS (
    SELECT v.run_id, avg(v.value) AS tail_value
    FROM val v JOIN best b USING (run_id)
    WHERE v.i > b.n - $patience
    GROUP BY v.run_id
),
train AS (
    SELECT run_id, step, value FROM scalars
    WHERE name = $metric AND split = 'train' AND isfinite(value)
),
train_levels AS (  -- the training loss over the interval that ends at each val point
    SELECT b.run_id,
           median(t.value) FILTER (WHERE t.step > b.before_best AND t.step <= b.best_step) AS train_at_best,
           median(t.value) FILTER (WHERE t.step > b.before_last AND t.step <= b.last_step) AS train_final
    FROM best b JOIN train t USING (run_id)
    GROUP BY b.run_id
)
SELECT b.run_id,
       $metric || '/val' AS subject,
       b.best_step AS step,
       printf('validation %s rose %.0f%% above its best (%.4g at step %d) while training %s fell %.0f%% (%.4g -> %.4g)',
              $metric, 100 * (t.tail_value / b.best_value - 1), b.best_value, b.best_step,
              $metric, 100 * (1 - l.train_final / l.train_at_best), l.train_at_best, l.train_final) AS message,
       json_object(
           'best_step', b.best_step, 'best_val', b.best_value,
           'final_val', b.final_value, 'tail_val_mean', t.tail_value,
           'train_at_best', l.train_at_best, 'train_final', l.train_final,
           'gap_at_best', b.best_value - l.train_at_best,
           'gap_final', b.final_value - l.train_final,
           'val_points_after_best', b.n - b.best_i
       )::VARCHAR AS evidence
FROM best b
JOIN tail t USING (run_id)
JOIN train_levels l USING (run_id)
WHERE b.best_i <= b.n - $patience
  AND t.tail_value > b.best_value + $min_rise * abs(b.best_value)
  AND l.train_final < l.train_at_best - $min_train_drop * abs(l.train_at_best)
