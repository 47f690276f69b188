-- rule: underfitting
-- severity: warning
-- title: Underfitting
-- requires: scalars:$metric/train>=20, scalars:$metric/val>=3
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: window_frac = 0.1
-- param: min_progress = 0.05
-- param: high_frac = 0.5
-- param: max_gap = 0.1
-- param: max_acc_gain = 0.5
-- param: warmup_frac = 0.1
-- param: progress_window_frac = 0.2
-- seed: part 6 §3.2 (underfitting: poor even on the training set), part 2 §6 (watch the curves for over- and underfitting), part 6 §7
-- suggestion: Give the model more capacity (more layers or units, a stronger architecture), train longer, and tune the learning rate and other hyper-parameters; if regularisation is strong (large weight decay, heavy dropout), loosen it.
-- Underfitting is high error on the training set itself, with no generalisation gap to
-- blame (Goodfellow et al., Deep Learning §5.2: underfitting = training error not low
-- enough, overfitting = train/test gap too large; Ng's bias vs variance). It fires when
--   training progressed        the last window's median training loss is at least
--                              min_progress (5%) below the first window's: a run that
--                              learns nothing is `loss_not_decreasing` (same 5%), whose
--                              causes and fixes (learning rate, data, gradients) differ.
--                              Progress is judged on that rule's windows (the first
--                              progress_window_frac of the points after warmup_frac of
--                              them, and the last progress_window_frac; its defaults), so
--                              the two rules split runs at the same line: a loss that only
--                              drops in its first steps (the output layer learning the
--                              class frequencies, as on shuffled labels) has not progressed
--   training stopped high      that last level is still >= high_frac (half) of the
--                              first (the windows: window_frac of the points, >= 3),
--                              i.e. training removed less than half of the starting
--                              loss (R^2 < 0.5 for an MSE on normalised targets; mean
--                              cross-entropy > ln(C)/2 for C balanced classes), or the
--                              training accuracy (`acc_metric/train`, when logged, as a
--                              fraction or in percent) closed less than max_acc_gain
--                              (half) of its initial gap to 100%
--   no gap                     the median of the last validation points (the same
--                              window, >= 3) is at most max_gap (10%) above the last
--                              training level: the model is no better on the data it
--                              trains on than on new data.
-- The loss must be positive (its start is its scale: a log-likelihood that goes
-- negative is not judged). Runs whose loss became non-finite are left to `divergence`.
WITH points AS (  -- one value per step (ranks averaged)
    SELECT run_id, name, split, step, avg(value) AS value
    FROM scalars
    WHERE name IN ($metric, $acc_metric) AND split IN ('train', 'val')
    GROUP BY run_id, name, split, step
),
broken AS (
    SELECT DISTINCT run_id FROM points WHERE name = $metric AND NOT isfinite(value)
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id, name, split ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id, name, split) AS n
    FROM points
    WHERE run_id NOT IN (SELECT run_id FROM broken) AND isfinite(value)
),
levels AS (
    SELECT run_id, name, split,
           median(value) FILTER (WHERE i <= greatest(ceil(n * $window_frac), 3)) AS first_level,
           median(value) FILTER (WHERE i > n - greatest(ceil(n * $window_frac), 3)) AS last_level,
           median(value) FILTER (WHERE i > floor(n * $warmup_frac)
                                   AND i <= floor(n * $warmup_frac) + greatest(floor(n * $progress_window_frac), 3)) AS progress_first,
           median(value) FILTER (WHERE i > n - greatest(floor(n * $progress_window_frac), 3)) AS progress_last,
           max(value) AS top,
           min(step) FILTER (WHERE i > n - greatest(ceil(n * $window_frac), 3)) AS last_from,
           max(step) AS last_step,
           any_value(n) AS points
    FROM numbered
    GROUP BY run_id, name, split
),
joined AS (
    SELECT t.run_id, t.first_level AS train_first, t.last_level AS train_last,
           t.progress_first, t.progress_last,
           t.last_from, t.last_step, t.points,
           v.last_level AS val_last,
           a.first_level AS acc_first, a.last_level AS acc_last,
           CASE WHEN a.top > 1 THEN 100.0 ELSE 1.0 END AS acc_scale,
           av.last_level AS val_acc_last
    FROM levels t
    JOIN levels v ON v.run_id = t.run_id AND v.name = $metric AND v.split = 'val'
    LEFT JOIN levels a ON a.run_id = t.run_id AND a.name = $acc_metric AND a.split = 'train'
    LEFT JOIN levels av ON av.run_id = t.run_id AND av.name = $acc_metric AND av.split = 'val'
    WHERE t.name = $metric AND t.split = 'train'
),
judged AS (
    SELECT *,
           train_last >= $high_frac * train_first AS loss_high,
           coalesce(acc_first < acc_scale
                    AND acc_last - acc_first < $max_acc_gain * (acc_scale - acc_first),
                    false) AS acc_low
    FROM joined
)
SELECT run_id,
       $metric || '/train' AS subject,
       last_from AS step,
       printf('the model underfits: training %s only fell from %.4g to %.4g (%.0f%% of its start still left) and validation %s is no worse (%.4g, %+.0f%% of training)%s',
              $metric, train_first, train_last, 100 * train_last / train_first, $metric,
              val_last, 100 * (val_last / train_last - 1),
              CASE WHEN acc_last IS NULL THEN ''
                   ELSE printf('; training %s %.3g -> %.3g%s', $acc_metric, acc_first, acc_last,
                               CASE WHEN val_acc_last IS NULL THEN ''
                                    ELSE printf(', validation %.3g', val_acc_last) END) END) AS message,
       json_object(
           'train_first', train_first, 'train_last', train_last,
           'remaining_share', train_last / train_first,
           'val_last', val_last, 'gap', (val_last - train_last) / train_last,
           'acc_first', acc_first, 'acc_last', acc_last, 'val_acc_last', val_acc_last,
           'loss_high', loss_high, 'acc_low', acc_low,
           'from_step', last_from, 'to_step', last_step, 'points', points,
           'progress_first', progress_first, 'progress_last', progress_last,
           'min_progress', $min_progress, 'high_frac', $high_frac, 'max_gap', $max_gap,
           'max_acc_gain', $max_acc_gain, 'warmup_frac', $warmup_frac,
           'progress_window_frac', $progress_window_frac
       )::VARCHAR AS evidence
FROM judged
WHERE train_first > 0 AND train_last > 0
  AND progress_last <= progress_first - $min_progress * abs(progress_first)
  AND val_last <= train_last + $max_gap * abs(train_last)
  AND (loss_high OR acc_low)
