-- rule: underfitting
-- severity: warning
-- title: Underfitting
-- when: ended
-- requires: scalars:$metric/train>=20, scalars:$metric/val>=3
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: window_frac = 0.1
-- param: start_points = 5
-- param: min_progress = 0.05
-- param: early_fall = 0.2
-- param: min_acc_gain = 0.05
-- param: chance_ceiling = 0.5
-- param: high_frac = 0.5
-- param: max_gap = 0.1
-- param: max_acc_gain = 0.5
-- param: warmup_frac = 0.1
-- param: progress_window_frac = 0.2
-- param: blowup_ratio = 2.0
-- param: blowup_sigmas = 3.0
-- seed: part 6 §3.2 (underfitting: poor even on the training set), part 2 §6 (watch the curves for over- and underfitting), part 6 §7
-- suggestion: Give the model more capacity (more layers or units, a stronger architecture), train longer, and tune the learning rate and other hyper-parameters; if regularisation is strong (large weight decay, heavy dropout), loosen it.
-- null: a healthy run that learned ends with its training loss below half of where the untrained model started, or, when it logs an accuracy, with training or validation accuracy past half-way from its start to 100%; or it fits its training data better than new data (a gap). A run whose training loss first blew up (its smoothed peak reached 2x the untrained model's loss, and 3x its step-to-step noise above it, before its last window) is not judged: steps too large threw it off, and capacity is not what it lacks (`lr_too_high`, which names that cause, draws its line at 4x the first loss: a run that rose 2-4x and settled high gets neither finding)
-- false_alarms: none of the 23 healthy runs of the corpus's tuning half (budget: under 1 in 20 healthy runs); the reference (the untrained model's first points, not a window that already holds learning) and the accuracy's precedence chosen on that half, measured on the held-out half (benchmarks/calibration.py). The blow-up exclusion only removes findings, so it cannot add a false alarm; on the corpus's labelled underfitting runs the smoothed training loss never rose above 1.03x its start (a blow-up needs 2x); healthy runs that rise early (up to 1.6x: BatchNorm CNNs under Adam/RMSprop, Adagrad; 2.2x for an MLP logged once per epoch, whose first point is already trained) end low, so the exclusion costs them nothing
-- Underfitting is high error on the training set itself, with no generalisation gap to
-- blame (Goodfellow et al., Deep Learning §5.2: underfitting = training error not low
-- enough, overfitting = train/test gap too large; Ng's bias vs variance). It fires when
--   training progressed        the run is not one `loss_not_decreasing` fires on (its
--                              three tests, with its defaults: start_points, warmup_frac,
--                              progress_window_frac as its window_frac, min_progress as its
--                              min_decrease, early_fall, min_acc_gain, chance_ceiling):
--                              a run that learns nothing has other causes and fixes
--                              (learning rate, data, gradients). The two rules split runs
--                              at the same line; a loss that fell by a fifth or more
--                              before warm-up ended converged quickly, and is judged here.
--   training stopped high      with an accuracy (`acc_metric`, train or val, as a fraction
--                              or in percent): the better of the last training and the
--                              last validation accuracy closed less than max_acc_gain
--                              (half) of the gap from the untrained model's accuracy (the
--                              training accuracy's first points; with a validation
--                              accuracy alone, its first evaluation) to 100%: judged by
--                              its accuracy, a model at 0.99 is not underfitting whatever
--                              its loss (detection and label-smoothed losses have high
--                              floors). With no accuracy:
--                              the last training level (window_frac of the points, >= 3)
--                              is still >= high_frac (half) of the start, the median of the
--                              untrained model's first `start_points` losses (R^2 < 0.5
--                              for an MSE on normalised targets; a window that already
--                              holds learning would make a fast learner look stuck)
--   no gap                     the median of the last validation points (the same
--                              window, >= 3) is at most max_gap (10%) above the last
--                              training level: the model is no better on the data it
--                              trains on than on new data.
--   no blow-up first          the training loss, smoothed by a running median of 3 (one
--                              bad batch is not a blow-up), never reached blowup_ratio
--                              (2x; lr_too_high needs 4x) of the untrained model's loss
--                              (the least of its first point and the median of its first
--                              `start_points`) and blowup_sigmas (3x) the loss's own
--                              noise (the median change from one point to the next)
--                              above it before the last window: a loss that blew up and
--                              settled high was thrown off by steps too large
--                              (`lr_too_high`), and more capacity or a longer run would
--                              not fix it.
-- The loss must be positive (its start is its scale: a log-likelihood that goes
-- negative is not judged). Runs whose loss became non-finite are left to `divergence`.
WITH points AS (  -- one value per step (ranks averaged; analysis/macros/curves.sql)
    SELECT * FROM loss_acc_points($metric, $acc_metric)
),
broken AS (
    SELECT DISTINCT run_id FROM points WHERE name = $metric AND NOT isfinite(value)
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id, name, split ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id, name, split) AS n,
           max(value) OVER (PARTITION BY run_id, name) AS top
    FROM points
    WHERE run_id NOT IN (SELECT run_id FROM broken) AND isfinite(value)
),
train_loss AS (  -- the training loss, smoothed, and its step-to-step change
    SELECT run_id, step, value,
           smooth3(value, run_id, step) AS smooth,  -- analysis/macros/curves.sql
           abs(value - lag(value) OVER (PARTITION BY run_id ORDER BY step)) AS change
    FROM numbered
    WHERE name = $metric AND split = 'train'
),
peaks AS (
    SELECT run_id, max(smooth) AS peak, arg_max(step, smooth) AS peak_step,
           median(change) AS noise
    FROM train_loss GROUP BY run_id
),
levels AS (
    SELECT run_id, name, split,
           median(value) FILTER (WHERE i <= $start_points) AS start_level,
           median(value) FILTER (WHERE i <= greatest($start_points, ceil(n * 0.05))) AS acc_start,
           arg_min(value, step) AS first_value,
           median(value) FILTER (WHERE i > n - greatest(ceil(n * $window_frac), 3)) AS last_level,
           median(value) FILTER (WHERE i > floor(n * $warmup_frac)
                                   AND i <= floor(n * $warmup_frac) + greatest(floor(n * $progress_window_frac), 3)) AS progress_first,
           median(value) FILTER (WHERE i > n - greatest(floor(n * $progress_window_frac), 3)) AS progress_last,
           CASE WHEN max(top) > 1 THEN 100.0 ELSE 1.0 END AS scale,
           min(step) FILTER (WHERE i > n - greatest(ceil(n * $window_frac), 3)) AS last_from,
           max(step) AS last_step,
           any_value(n) AS points
    FROM numbered
    GROUP BY run_id, name, split
),
joined AS (
    SELECT t.run_id, t.start_level AS train_start, t.last_level AS train_last,
           t.progress_first, t.progress_last,
           t.last_from, t.last_step, t.points,
           v.last_level AS val_last,
           least(t.first_value, t.start_level) AS untrained, pk.peak, pk.peak_step, pk.noise,
           coalesce(a.acc_start, av.first_value) AS acc_start,
           a.last_level AS acc_last, av.last_level AS val_acc_last,
           greatest(a.last_level, av.last_level) AS acc_best_last,
           coalesce(a.scale, av.scale) AS acc_scale,
           a.points >= 20 AND a.progress_last - a.acc_start < $min_acc_gain * (a.scale - a.acc_start)
           AND a.progress_last < $chance_ceiling * a.scale AS acc_at_chance
    FROM levels t
    JOIN levels v ON v.run_id = t.run_id AND v.name = $metric AND v.split = 'val'
    LEFT JOIN levels a ON a.run_id = t.run_id AND a.name = $acc_metric AND a.split = 'train'
    LEFT JOIN levels av ON av.run_id = t.run_id AND av.name = $acc_metric AND av.split = 'val'
    LEFT JOIN peaks pk ON pk.run_id = t.run_id
    WHERE t.name = $metric AND t.split = 'train'
),
judged AS (
    SELECT *,
           -- loss_not_decreasing's three tests, with its thresholds
           train_start - progress_last >= $min_progress * abs(train_start)
           AND (progress_first - progress_last >= $min_progress * abs(progress_first)
                OR train_start - progress_first >= $early_fall * abs(train_start))
           AND NOT coalesce(acc_at_chance, false) AS progressed,
           train_last >= $high_frac * train_start AS loss_high,
           coalesce(peak_step < last_from
                    AND peak >= $blowup_ratio * untrained
                    AND peak - untrained >= $blowup_sigmas * noise, false) AS blew_up,
           acc_best_last - acc_start < $max_acc_gain * (acc_scale - acc_start) AS acc_low
    FROM joined
)
SELECT run_id,
       $metric || '/train' AS subject,
       last_from AS step,
       printf('the model underfits: %s, and validation %s is no worse than training (%.4g, %+.0f%% of training %.4g)',
              CASE WHEN acc_low IS NULL
                   THEN printf('training %s only fell from %.4g (the untrained model) to %.4g (%.0f%% of its start still left)',
                               $metric, train_start, train_last, 100 * train_last / train_start)
                   ELSE printf('training %s %.3g -> %.3g (from the untrained model%s), less than half-way to %g, while training %s went %.4g -> %.4g',
                               $acc_metric, acc_start, acc_last,
                               CASE WHEN val_acc_last IS NULL THEN ''
                                    ELSE printf('; validation %.3g', val_acc_last) END,
                               acc_scale, $metric, train_start, train_last) END,
              $metric, val_last, 100 * (val_last / train_last - 1), train_last) AS message,
       json_object(
           'train_start', train_start, 'train_last', train_last,
           'remaining_share', train_last / train_start,
           'val_last', val_last, 'gap', (val_last - train_last) / train_last,
           'acc_start', acc_start, 'acc_last', acc_last, 'val_acc_last', val_acc_last,
           'judged_by', CASE WHEN acc_low IS NULL THEN 'loss' ELSE 'accuracy' END,
           'loss_high', loss_high, 'acc_low', acc_low,
           'from_step', last_from, 'to_step', last_step, 'points', points,
           'progress_first', progress_first, 'progress_last', progress_last,
           'min_progress', $min_progress, 'high_frac', $high_frac, 'max_gap', $max_gap,
           'max_acc_gain', $max_acc_gain, 'warmup_frac', $warmup_frac,
           'progress_window_frac', $progress_window_frac,
           'peak_smoothed', peak, 'peak_step', peak_step, 'noise', noise,
           'blowup_ratio', $blowup_ratio, 'blowup_sigmas', $blowup_sigmas
       )::VARCHAR AS evidence
FROM judged
WHERE train_start > 0 AND train_last > 0
  AND progressed
  AND NOT blew_up
  AND val_last <= train_last + $max_gap * abs(train_last)
  AND coalesce(acc_low, loss_high)
