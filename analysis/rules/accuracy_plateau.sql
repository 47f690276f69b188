-- rule: accuracy_plateau
-- severity: warning
-- title: Accuracy plateau
-- requires: scalars:$metric/val>=3 | scalars:$metric/train>=20
-- param: metric = 'acc'
-- param: patience = 10
-- param: min_delta = 0.005
-- param: fit_level = 0.99
-- param: train_window = 20
-- param: lr_drop = 0.5
-- seed: part 1 §3 (Acc stuck at one level: learning rate decayed too early, or the model lacks capacity), part 5 §5.1 (learning-rate schedulers: StepLR, ReduceLROnPlateau)
-- suggestion: If the learning rate was decayed before the plateau began, decay it later or less (a larger step_size or gamma in StepLR, or ReduceLROnPlateau driven by this metric); otherwise the model may lack capacity: change the architecture (more layers or units), and check the data (labels, class balance, preprocessing).
-- The accuracy stopped improving and training went on: over the last `patience`
-- evaluations (or more) it never rose more than min_delta above the best it had reached
-- before them. Patience 10 is the default of PyTorch's and Keras' ReduceLROnPlateau;
-- min_delta 0.005 is half a percentage point of accuracy (scaled x100 when the metric is
-- logged in percent). The series is the validation metric (one point per evaluation)
-- when the run logs at least 3 of them, else the training metric averaged per epoch
-- (per `train_window` points when no epoch is logged: per-batch accuracy is too noisy
-- for a best-so-far test).
-- A plateau at a level the model already fits is convergence, not a stall: when the
-- training accuracy over the plateau (or the plateaued training series itself) is at
-- least fit_level (99%), the run is left to `overfitting` and `early_stopping`.
-- The learning rate (scalar `lr`, split train, as the collector logs param group 0)
-- explains the plateau when it fell to at most lr_drop (half) of its peak just before
-- the plateau began: within the `patience` evaluation intervals that precede its first
-- evaluation (the same horizon as the plateau itself; a decay long before, after which
-- the metric kept improving, did not stop it), or in the interval that follows it, up to
-- the plateau's second evaluation. The plateau's first evaluation is the last one that
-- improved, so a decay that stops all progress lands after it: in the usual loop
-- (evaluate, then scheduler.step() at the end of the epoch) the cut comes right after
-- the best evaluation and before the first one that fails to improve. The message then
-- says "LR decayed too early" (seed part 1 §3).
WITH points AS (  -- one value per step (ranks averaged)
    SELECT run_id, split, step, any_value(epoch) AS epoch, avg(value) AS value
    FROM scalars
    WHERE name = $metric AND split IN ('train', 'val') AND isfinite(value)
    GROUP BY run_id, split, step
),
val_runs AS (  -- the same 3 as the val requirement in the header
    SELECT run_id FROM points WHERE split = 'val' GROUP BY run_id HAVING count(*) >= 3
),
train_points AS (
    SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY step) AS i
    FROM points
    WHERE split = 'train'
),
evals AS (
    SELECT run_id, split, step, value FROM points
    WHERE split = 'val' AND run_id IN (SELECT run_id FROM val_runs)
    UNION ALL
    SELECT run_id, 'train', max(step), avg(value) FROM train_points
    WHERE run_id NOT IN (SELECT run_id FROM val_runs)
    GROUP BY run_id, epoch IS NULL, coalesce(epoch, (i - 1) // $train_window)
),
scaled AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS k,
           count(*) OVER (PARTITION BY run_id) AS n,
           max(step) OVER (PARTITION BY run_id) AS last_step,
           lag(step) OVER (PARTITION BY run_id ORDER BY step) AS prev_step,
           lead(step) OVER (PARTITION BY run_id ORDER BY step) AS next_step,
           CASE WHEN max(value) OVER (PARTITION BY run_id) > 1 THEN 100.0 ELSE 1.0 END AS scale
    FROM evals
),
bounds AS (
    SELECT *,
           max(value) OVER (PARTITION BY run_id ORDER BY k ROWS UNBOUNDED PRECEDING) AS best,
           max(value) OVER (PARTITION BY run_id ORDER BY k ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS later_best
    FROM scaled
),
plateaus AS (  -- the earliest evaluation after which the metric never beat its best by min_delta
    SELECT run_id, any_value(split) AS split, any_value(n) AS n, any_value(scale) AS scale,
           min(k) AS start_k, arg_min(step, k) AS start_step, arg_min(best, k) AS level,
           arg_min(next_step, k) AS second_step,
           any_value(last_step) AS last_step
    FROM bounds
    WHERE later_best <= best + $min_delta * scale
    GROUP BY run_id
),
stalled AS (
    SELECT p.run_id, p.split, p.n, p.scale, p.start_k, p.start_step, p.second_step,
           p.level, p.last_step,
           p.n - p.start_k AS flat_evals, arg_max(b.step, b.value) AS best_step,
           -- where "just before" starts: the evaluation `patience` before the plateau's first
           arg_min(coalesce(b.prev_step, -1), b.k) FILTER (WHERE b.k >= p.start_k - $patience) AS lookback_from
    FROM plateaus p JOIN bounds b ON b.run_id = p.run_id AND b.k <= p.start_k
    WHERE p.n - p.start_k >= $patience
    GROUP BY ALL
),
fit AS (  -- how well the model fits its training data over the plateau
    SELECT s.run_id, median(t.value) AS train_level
    FROM stalled s JOIN points t ON t.run_id = s.run_id AND t.split = 'train' AND t.step > s.start_step
    GROUP BY s.run_id
),
lr AS (
    SELECT run_id, step, avg(value) AS lr FROM scalars
    WHERE name = 'lr' AND split = 'train' AND isfinite(value)
    GROUP BY run_id, step
),
lr_peak AS (  -- the highest learning rate of the stretch just before the plateau's second evaluation
    SELECT s.run_id, max(l.lr) AS peak, arg_max(l.step, l.lr) AS peak_step
    FROM stalled s
    JOIN lr l ON l.run_id = s.run_id AND l.step > s.lookback_from AND l.step <= s.second_step
    GROUP BY s.run_id
),
lr_on_plateau AS (
    SELECT s.run_id, median(l.lr) AS plateau_lr
    FROM stalled s JOIN lr l ON l.run_id = s.run_id AND l.step > s.start_step
    GROUP BY s.run_id
),
lr_drop AS (
    SELECT s.run_id, p.peak, min(l.step) AS drop_step, arg_min(l.lr, l.step) AS dropped_to
    FROM stalled s
    JOIN lr_peak p USING (run_id)
    JOIN lr l ON l.run_id = s.run_id AND l.step > p.peak_step AND l.step <= s.second_step
    WHERE l.lr <= $lr_drop * p.peak
    GROUP BY s.run_id, p.peak
)
SELECT s.run_id,
       $metric || '/' || s.split AS subject,
       s.start_step AS step,
       printf('%s %s has been stuck at %.4g for the last %d evaluations (steps %d-%d: never more than %g above its best)%s',
              s.split, $metric, s.level, s.flat_evals, s.start_step, s.last_step,
              $min_delta * s.scale,
              CASE WHEN d.run_id IS NOT NULL
                   THEN printf('; LR decayed too early: the learning rate fell from %.3g to %.3g at step %d, just before progress stopped',
                               d.peak, d.dropped_to, d.drop_step)
                   ELSE '' END) AS message,
       json_object(
           'series', s.split, 'level', s.level, 'best_step', s.best_step,
           'plateau_start_step', s.start_step, 'last_step', s.last_step,
           'flat_evaluations', s.flat_evals, 'evaluations', s.n,
           'train_level', f.train_level,
           'lr_decayed_early', d.run_id IS NOT NULL, 'lr_peak_before', pk.peak,
           'lr_lookback_from_step', s.lookback_from,
           'lr_drop_step', d.drop_step, 'lr_dropped_to', d.dropped_to, 'lr_on_plateau', o.plateau_lr,
           'patience', $patience, 'min_delta', $min_delta * s.scale,
           'fit_level', $fit_level * s.scale, 'lr_drop', $lr_drop
       )::VARCHAR AS evidence
FROM stalled s
LEFT JOIN fit f USING (run_id)
LEFT JOIN lr_peak pk USING (run_id)
LEFT JOIN lr_drop d USING (run_id)
LEFT JOIN lr_on_plateau o USING (run_id)
WHERE coalesce(f.train_level, s.level) < $fit_level * s.scale
