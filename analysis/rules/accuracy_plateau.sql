-- rule: accuracy_plateau
-- severity: warning
-- title: Accuracy plateau
-- when: ended
-- requires: scalars:$metric/val>=3 | scalars:$metric/train>=20
-- param: metric = 'acc'
-- param: loss_metric = 'loss'
-- param: patience = 10
-- param: min_delta = 0.005
-- param: fit_level = 0.99
-- param: min_loss_drop = 0.05
-- param: train_window = 20
-- param: lr_drop = 0.5
-- param: lr_hold = 0.9
-- seed: part 1 §3 (Acc stuck at one level: learning rate decayed too early, or the model lacks capacity), part 5 §5.1 (learning-rate schedulers: StepLR, ReduceLROnPlateau)
-- suggestion: If the learning rate was decayed before the plateau began, decay it later or less (a larger step_size or gamma in StepLR, or ReduceLROnPlateau driven by this metric); otherwise the model may lack capacity: change the architecture (more layers or units), and check the data (labels, class balance, preprocessing).
-- null: a healthy run's accuracy levels off at convergence: either the model fits its training data (>= fit_level) or it is still learning, which its loss shows (it keeps falling across the plateau by min_loss_drop or more)
-- false_alarms: none of the 23 healthy runs of the corpus's tuning half (budget: under 1 in 20 healthy runs); min_loss_drop chosen on that half, between a linear model still learning on a 96.7% plateau (validation loss -20% across it) and an LR cut 1000x (-0.5%); measured on the held-out half (benchmarks/calibration.py)
-- The accuracy stopped improving, training went on, and nothing else moved either.
--   the plateau      over the last `patience` evaluations (or more) the accuracy never rose
--                    more than min_delta above the best it had reached before them, both
--                    read on the curve smoothed by a running median of 3 evaluations (the
--                    first and last as they are): one lucky evaluation neither sets the
--                    best nor ends a plateau. Patience 10 is the default of PyTorch's and
--                    Keras' ReduceLROnPlateau; min_delta 0.005 is half a point of accuracy
--                    (x100 when the metric is logged in percent). The series is the
--                    validation metric when the run logs at least 3 evaluations of it, else
--                    the training metric averaged per epoch (per `train_window` points when
--                    no epoch is logged: per-batch accuracy is too noisy for a best-so-far).
--   not converged    the model does not fit its training data: the training accuracy over
--                    the plateau (or the plateaued series itself) is below fit_level (99%);
--                    when validation sits above training (dropout or augmentation measured
--                    on the training batches), the validation level stands for the fit.
--   not learning     the loss (`loss_metric`: validation when it has 3 evaluations on the
--                    plateau, else training) fell less than min_loss_drop (5%) from the
--                    first third of the plateau to its last third (medians): accuracy counts
--                    whole examples, and a model whose loss is still falling is still
--                    learning (a small validation set's accuracy moves in steps). A run that
--                    logs no loss is judged on its accuracy alone.
-- The learning rate (scalar `lr`, split train, as the collector logs param group 0)
-- explains the plateau when it fell to at most lr_drop (half) of its peak just before
-- the plateau began: within the `patience` evaluation intervals that precede its first
-- evaluation (the same horizon as the plateau itself; a decay long before, after which
-- the metric kept improving, did not stop it), or in the interval that follows it, up to
-- the plateau's second evaluation. Only a decay from a rate the run trained at counts:
-- the learning rate must have stayed at lr_hold (90%) of that peak or above for the whole
-- evaluation interval before the drop; a warm-up ramp (rising, or a bias group's rate
-- falling from its warm-up value step by step) is not a decay. The plateau's first
-- evaluation is the last one that improved, so a decay that stops all progress lands
-- after it: in the usual loop (evaluate, then scheduler.step() at the end of the epoch)
-- the cut comes right after the best evaluation. The message then says "LR decayed too
-- early" (seed part 1 §3).
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
           row_number() OVER w AS k,
           count(*) OVER (PARTITION BY run_id) AS n,
           max(step) OVER (PARTITION BY run_id) AS last_step,
           lag(step) OVER w AS prev_step,
           lead(step) OVER w AS next_step,
           smooth3(value, run_id, step) AS smooth,
           CASE WHEN max(value) OVER (PARTITION BY run_id) > 1 THEN 100.0 ELSE 1.0 END AS scale
    FROM evals
    WINDOW w AS (PARTITION BY run_id ORDER BY step)
),
bounds AS (
    SELECT *,
           max(smooth) OVER (PARTITION BY run_id ORDER BY k ROWS UNBOUNDED PRECEDING) AS best,
           max(smooth) OVER (PARTITION BY run_id ORDER BY k ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS later_best
    FROM scaled
),
plateaus AS (  -- the earliest evaluation after which the metric never beat its best by min_delta
    SELECT run_id, any_value(split) AS split, any_value(n) AS n, any_value(scale) AS scale,
           min(k) AS start_k, arg_min(step, k) AS start_step, arg_min(best, k) AS level,
           arg_min(next_step, k) AS second_step,
           arg_min(step - coalesce(prev_step, 0), k) AS interval,
           any_value(last_step) AS last_step
    FROM bounds
    WHERE later_best <= best + $min_delta * scale
    GROUP BY run_id
),
stalled AS (
    SELECT p.run_id, p.split, p.n, p.scale, p.start_k, p.start_step, p.second_step,
           p.level, p.last_step, p.interval,
           p.n - p.start_k AS flat_evals, arg_max(b.step, b.smooth) AS best_step,
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
losses AS (  -- the loss on the plateau, per split
    SELECT s.run_id, l.split, l.step, avg(l.value) AS value,
           any_value(s.start_step + (s.last_step - s.start_step) / 3.0) AS first_third_end,
           any_value(s.last_step - (s.last_step - s.start_step) / 3.0) AS last_third_from
    FROM stalled s
    JOIN scalars l ON l.run_id = s.run_id AND l.name = $loss_metric AND l.split IN ('train', 'val')
                  AND l.step >= s.start_step AND isfinite(l.value)
    GROUP BY s.run_id, l.split, l.step
),
loss_split AS (  -- validation when it has 3 evaluations on the plateau, else training
    SELECT run_id, CASE WHEN count(*) FILTER (WHERE split = 'val') >= 3 THEN 'val' ELSE 'train' END AS split
    FROM losses GROUP BY run_id
),
learning AS (
    SELECT l.run_id, any_value(l.split) AS loss_split,
           median(l.value) FILTER (WHERE l.step <= l.first_third_end) AS loss_first,
           median(l.value) FILTER (WHERE l.step >= l.last_third_from) AS loss_last
    FROM losses l JOIN loss_split USING (run_id, split)
    GROUP BY l.run_id
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
lr_fall AS (  -- the first step at which the rate fell to lr_drop of that peak
    SELECT s.run_id, p.peak, min(l.step) AS drop_step, arg_min(l.lr, l.step) AS dropped_to
    FROM stalled s
    JOIN lr_peak p USING (run_id)
    JOIN lr l ON l.run_id = s.run_id AND l.step > p.peak_step AND l.step <= s.second_step
    WHERE l.lr <= $lr_drop * p.peak
    GROUP BY s.run_id, p.peak
),
lr_drop AS (  -- ... from a rate held for the evaluation interval before it (not a warm-up ramp)
    SELECT f.run_id, f.peak, f.drop_step, f.dropped_to
    FROM lr_fall f
    JOIN stalled s USING (run_id)
    JOIN lr l ON l.run_id = f.run_id AND l.step < f.drop_step AND l.step >= f.drop_step - s.interval
    GROUP BY f.run_id, f.peak, f.drop_step, f.dropped_to
    HAVING min(l.lr) >= $lr_hold * f.peak
)
SELECT s.run_id,
       $metric || '/' || s.split AS subject,
       s.start_step AS step,
       printf('%s %s has been stuck at %.4g for the last %d evaluations (steps %d-%d: never more than %g above its best, smoothed over 3 evaluations); the model fits its training data to %.4g%s%s',
              s.split, $metric, s.level, s.flat_evals, s.start_step, s.last_step,
              $min_delta * s.scale, greatest(coalesce(f.train_level, s.level), s.level),
              CASE WHEN g.loss_first IS NULL THEN ''
                   ELSE printf(' and its %s %s changed only %+.1f%% across the plateau (%.4g -> %.4g)',
                               g.loss_split, $loss_metric, 100 * (g.loss_last / g.loss_first - 1),
                               g.loss_first, g.loss_last) END,
              CASE WHEN d.run_id IS NOT NULL
                   THEN printf('; LR decayed too early: the learning rate fell from %.3g to %.3g at step %d, just before progress stopped',
                               d.peak, d.dropped_to, d.drop_step)
                   ELSE '' END) AS message,
       json_object(
           'series', s.split, 'level', s.level, 'best_step', s.best_step,
           'plateau_start_step', s.start_step, 'last_step', s.last_step,
           'flat_evaluations', s.flat_evals, 'evaluations', s.n,
           'train_level', f.train_level,
           'loss_series', g.loss_split, 'loss_first_third', g.loss_first,
           'loss_last_third', g.loss_last,
           'loss_change', g.loss_last / g.loss_first - 1,
           'lr_decayed_early', d.run_id IS NOT NULL, 'lr_peak_before', pk.peak,
           'lr_lookback_from_step', s.lookback_from,
           'lr_drop_step', coalesce(d.drop_step, lf.drop_step), 'lr_dropped_to', coalesce(d.dropped_to, lf.dropped_to),
           'lr_held_before_drop', d.run_id IS NOT NULL OR lf.run_id IS NULL,
           'lr_on_plateau', o.plateau_lr,
           'patience', $patience, 'min_delta', $min_delta * s.scale,
           'fit_level', $fit_level * s.scale, 'min_loss_drop', $min_loss_drop,
           'lr_drop', $lr_drop, 'lr_hold', $lr_hold
       )::VARCHAR AS evidence
FROM stalled s
LEFT JOIN fit f USING (run_id)
LEFT JOIN learning g USING (run_id)
LEFT JOIN lr_peak pk USING (run_id)
LEFT JOIN lr_fall lf USING (run_id)
LEFT JOIN lr_drop d USING (run_id)
LEFT JOIN lr_on_plateau o USING (run_id)
WHERE greatest(coalesce(f.train_level, s.level), s.level) < $fit_level * s.scale
  AND (g.loss_first IS NULL OR g.loss_last IS NULL
       OR g.loss_last > g.loss_first - $min_loss_drop * abs(g.loss_first))
