-- rule: loss_not_decreasing
-- severity: warning
-- title: Loss not decreasing
-- when: ended
-- requires: scalars:$metric/train>=20 | scalars:$metric/val>=20
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: warmup_frac = 0.1
-- param: window_frac = 0.2
-- param: start_points = 5
-- param: min_decrease = 0.05
-- param: early_fall = 0.2
-- param: min_acc_gain = 0.05
-- param: chance_ceiling = 0.5
-- seed: part 1 §3 (Loss does not decrease), part 2 §5, part 6 §4
-- suggestion: Raise the learning rate or use an adaptive optimizer (Adam), check that the data and labels are right, and check that gradients reach every layer; a loss that blew up first and came down only to chance level needs a lower learning rate or gradient clipping.
-- null: a healthy run ends well below where it started: its last window is more than min_decrease below its first points and below its first window after warm-up (unless it converged within the warm-up), and its accuracy, when logged, rises well above where it started
-- false_alarms: none of the 23 healthy runs of the corpus's tuning half (budget: under 1 in 20 healthy runs); early_fall and min_acc_gain chosen on that half (healthy: the loss fell >= 44% from its start, accuracy closed >= 24% of its gap; no progress: <= 4% and 0%; a linear model that converged within warm-up: 37% from its start), measured on the held-out half (benchmarks/calibration.py)
-- The series is the training loss (the validation loss when the run logs fewer than 20
-- training points: evaluation-only, per-epoch logs). Its windows are medians (one noisy
-- batch is irrelevant): the start (the first `start_points` points), the first window
-- after warm-up (window_frac of the points after skipping warmup_frac of them) and the
-- last window (the last window_frac). The run learned nothing when any of these holds:
--   no lower than its start    the last window is less than min_decrease (5%) below the
--                              start: the loss stayed where it began, or came back to it
--                              (or above it) after learning for a while
--   flat after warm-up         the last window is less than min_decrease below the first
--                              window after warm-up, and that window is less than
--                              early_fall (a fifth) below the start: a loss that only
--                              moves in its first steps (the output layer learning the
--                              class frequencies, as on shuffled labels) has not
--                              progressed, while one that fell by a fifth or more before
--                              warm-up ended converged quickly (a small model: then
--                              `underfitting` judges where it ended)
--   accuracy at chance         the training accuracy (`acc_metric`, when logged) closed
--                              less than min_acc_gain (5%) of its gap to 100% between the
--                              start (its first max(start_points, 5%) points) and the last
--                              window, and ends below chance_ceiling (half: no better than
--                              chance for two or more balanced classes; a pre-trained
--                              model that starts above it is judged on its loss). This is
--                              the reference that finds a loss which blew up first and
--                              came back down only to chance level (ln C for C classes):
--                              against the blow-up, it looks like progress.
-- Runs whose loss became non-finite are left to `divergence`.
WITH points AS (  -- one value per step and split (ranks averaged; analysis/macros/curves.sql)
    SELECT * FROM loss_acc_points($metric, $acc_metric)
),
broken AS (
    SELECT DISTINCT run_id FROM points WHERE name = $metric AND NOT isfinite(value)
),
chosen AS (  -- the training loss, or the validation loss where training has too few points
    SELECT run_id,
           CASE WHEN count(*) FILTER (WHERE split = 'train') >= 20 THEN 'train' ELSE 'val' END AS split
    FROM points WHERE name = $metric GROUP BY run_id
),
series AS (
    SELECT p.run_id, p.split, p.step, p.value,
           row_number() OVER (PARTITION BY p.run_id ORDER BY p.step) AS i,
           count(*) OVER (PARTITION BY p.run_id) AS n
    FROM points p JOIN chosen c USING (run_id, split)
    WHERE p.name = $metric AND p.run_id NOT IN (SELECT run_id FROM broken)
),
windows AS (
    SELECT run_id,
           greatest(floor(any_value(n) * $window_frac), 3) AS w,
           floor(any_value(n) * $warmup_frac) AS skip
    FROM series GROUP BY run_id
),
levels AS (
    SELECT s.run_id, any_value(s.split) AS split,
           median(s.value) FILTER (WHERE s.i <= $start_points) AS start_level,
           median(s.value) FILTER (WHERE s.i > w.skip AND s.i <= w.skip + w.w) AS first_level,
           median(s.value) FILTER (WHERE s.i > s.n - w.w) AS last_level,
           min(s.step) FILTER (WHERE s.i > w.skip) AS from_step,
           min(s.step) FILTER (WHERE s.i > s.n - w.w) AS last_from,
           max(s.step) AS to_step,
           any_value(s.n) AS points
    FROM series s JOIN windows w USING (run_id)
    GROUP BY s.run_id
),
acc AS (
    SELECT run_id, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n,
           max(value) OVER (PARTITION BY run_id) AS top
    FROM points
    WHERE name = $acc_metric AND split = 'train' AND isfinite(value)
),
acc_levels AS (
    SELECT a.run_id,
           CASE WHEN any_value(a.top) > 1 THEN 100.0 ELSE 1.0 END AS scale,
           median(a.value) FILTER (WHERE a.i <= greatest($start_points, ceil(a.n * 0.05))) AS acc_start,
           median(a.value) FILTER (WHERE a.i > a.n - greatest(floor(a.n * $window_frac), 3)) AS acc_last,
           any_value(a.n) AS acc_points
    FROM acc a GROUP BY a.run_id
    HAVING count(*) >= 20
),
val_acc AS (
    SELECT run_id, arg_max(value, step) AS val_acc_last FROM points
    WHERE name = $acc_metric AND split = 'val' AND isfinite(value) GROUP BY run_id
),
judged AS (
    SELECT l.*, a.acc_start, a.acc_last, a.scale, v.val_acc_last,
           l.start_level - l.last_level < $min_decrease * abs(l.start_level) AS not_below_start,
           l.first_level - l.last_level < $min_decrease * abs(l.first_level)
           AND l.start_level - l.first_level < $early_fall * abs(l.start_level) AS flat_after_warmup,
           coalesce(a.acc_last - a.acc_start < $min_acc_gain * (a.scale - a.acc_start)
                    AND a.acc_last < $chance_ceiling * a.scale, false) AS acc_at_chance
    FROM levels l
    LEFT JOIN acc_levels a USING (run_id)
    LEFT JOIN val_acc v USING (run_id)
)
SELECT run_id,
       $metric || '/' || split AS subject,
       to_step AS step,
       printf('%s %s did not decrease meaningfully: %s',
              CASE WHEN split = 'train' THEN 'training' ELSE 'validation' END, $metric,
              concat_ws('; ',
                  CASE WHEN not_below_start
                       THEN printf('it ended less than %.0f%% below where it started (median %.4g over its first %d points, %.4g over the last window from step %d: %+.1f%%)',
                                   100 * $min_decrease, start_level, $start_points, last_level,
                                   last_from, 100 * (last_level / start_level - 1)) END,
                  CASE WHEN flat_after_warmup AND NOT not_below_start
                       THEN printf('median %.4g over the first window after warm-up, %.4g over the last (%+.1f%%, steps %d-%d)',
                                   first_level, last_level, 100 * (last_level / first_level - 1),
                                   from_step, to_step) END,
                  CASE WHEN acc_at_chance
                       THEN printf('training %s stayed at chance level: %.3g at the start, %.3g over the last window%s, while the loss went %.4g -> %.4g',
                                   $acc_metric, acc_start, acc_last,
                                   CASE WHEN val_acc_last IS NULL THEN ''
                                        ELSE printf(' (validation %.3g)', val_acc_last) END,
                                   first_level, last_level) END)) AS message,
       json_object(
           'series', split, 'start_level', start_level, 'first_level', first_level,
           'last_level', last_level,
           'relative_decrease', (first_level - last_level) / abs(first_level),
           'decrease_from_start', (start_level - last_level) / abs(start_level),
           'not_below_start', not_below_start, 'flat_after_warmup', flat_after_warmup,
           'acc_at_chance', acc_at_chance, 'acc_start', acc_start, 'acc_last', acc_last,
           'val_acc_last', val_acc_last,
           'from_step', from_step, 'to_step', to_step, 'points', points,
           'min_decrease', $min_decrease, 'early_fall', $early_fall,
           'min_acc_gain', $min_acc_gain, 'chance_ceiling', $chance_ceiling * coalesce(scale, 1.0)
       )::VARCHAR AS evidence
FROM judged
WHERE not_below_start OR flat_after_warmup OR acc_at_chance
