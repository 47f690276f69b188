-- rule: early_stopping
-- severity: info
-- title: Early stopping point
-- when: ended
-- requires: scalars:$metric/val>=3
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: patience = 5
-- param: min_delta = 0.01
-- param: acc_delta = 0.01
-- seed: part 3 §3 (early stopping), part 6 §3
-- suggestion: Use patience-based early stopping on the validation metric and keep the best checkpoint. Where the finding says the run still improved after the proposed stop, use at least the patience it names (or reduce the learning rate on a plateau, ReduceLROnPlateau, before stopping); where it says the rest bought nothing, those steps can be saved.
-- null: a run that should not stop early improves its validation loss by min_delta within every `patience` evaluations, up to its end
-- false_alarms: info, never an alarm; it fires where patience-based early stopping would stop before the end (2 of the 23 healthy runs of the corpus's tuning half) and claims the rest bought nothing only where the best after its stop is within min_delta (loss) and acc_delta (accuracy) of the checkpoint it would have kept
-- Replays patience-based early stopping as Keras' and Lightning's `EarlyStopping` do: an
-- evaluation improves when it beats the reference by min_delta (relative), and becomes
-- the new reference; the reference stays put otherwise, so a slow steady descent
-- (under min_delta per evaluation) still improves every few evaluations. Training stops
-- at the first evaluation `patience` evaluations after the last improvement. Then the rule
-- says what the rest of the run bought, which no callback could have seen: the best
-- validation loss before the stop (the checkpoint it keeps) against the best level the
-- run reached after it, smoothed over 3 evaluations (one lucky evaluation is not a
-- gain); the same for the validation accuracy (`acc_metric`), when logged.
--   bought nothing      the level after is within min_delta (1%) of the loss and
--                       acc_delta (one point of accuracy, x100 in percent) of the
--                       accuracy: the saved steps are pure savings
--   still improved      the message says by how much and where, the patience that would
--                       have kept it (one more than the longest stretch without
--                       improvement before the run's last improvement) and where that
--                       patience stops instead (or that it trains to the end)
WITH RECURSIVE val AS (  -- one value per step (ranks averaged; analysis/macros/curves.sql)
    SELECT * FROM val_curve($metric)
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n,
           median(value) OVER (PARTITION BY run_id ORDER BY step
                               ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS smooth
    FROM val
),
replay AS (  -- the callback's state after each evaluation: reference and last improvement
    SELECT run_id, i, value AS ref, i AS last_improved FROM numbered WHERE i = 1
    UNION ALL
    SELECT v.run_id, v.i,
           CASE WHEN v.value < r.ref - $min_delta * abs(r.ref) THEN v.value ELSE r.ref END,
           CASE WHEN v.value < r.ref - $min_delta * abs(r.ref) THEN v.i ELSE r.last_improved END
    FROM replay r JOIN numbered v ON v.run_id = r.run_id AND v.i = r.i + 1
),
marks AS (
    SELECT v.*, r.ref, r.last_improved,
           max(r.last_improved) OVER (PARTITION BY v.run_id) AS final_improved
    FROM numbered v JOIN replay r USING (run_id, i)
),
stops AS (
    SELECT run_id, min(i) AS stop_i FROM marks
    WHERE i - last_improved >= $patience GROUP BY run_id
),
needed AS (  -- the patience that reaches the last improvement: its longest wait before it, + 1
    SELECT run_id, max(i - last_improved) + 1 AS patience_needed, any_value(final_improved) AS final_improved
    FROM marks WHERE i <= final_improved GROUP BY run_id
),
after AS (  -- the checkpoint kept at the stop, and the level the run reached after it
    SELECT s.run_id,
           min(m.value) FILTER (WHERE m.i <= s.stop_i) AS best_before,
           min(m.smooth) FILTER (WHERE m.i > s.stop_i) AS best_after,
           -- the first step of the lowest level: ties (a flat smoothed curve) are common,
           -- and arg_min alone would pick any of them (DuckDB's threads, run batches)
           arg_min(m.step, (m.smooth, m.step))
               FILTER (WHERE m.i > s.stop_i AND m.smooth IS NOT NULL) AS best_after_step
    FROM stops s JOIN marks m USING (run_id)
    GROUP BY s.run_id
),
acc_points AS (
    SELECT run_id, step, value,
           median(value) OVER (PARTITION BY run_id ORDER BY step
                               ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS smooth,
           max(value) OVER (PARTITION BY run_id) AS top
    FROM val_curve($acc_metric)
),
acc AS (
    SELECT a.run_id,
           CASE WHEN any_value(a.top) > 1 THEN 100.0 ELSE 1.0 END AS scale,
           max(a.value) FILTER (WHERE a.step <= m.step) AS acc_before,
           max(a.smooth) FILTER (WHERE a.step > m.step) AS acc_after,
           arg_max(a.step, a.smooth) FILTER (WHERE a.step > m.step) AS acc_after_step
    FROM stops s
    JOIN marks m ON m.run_id = s.run_id AND m.i = s.stop_i
    JOIN acc_points a ON a.run_id = s.run_id
    GROUP BY a.run_id
),
last_steps AS (
    SELECT run_id, max(step) AS last_step FROM scalars GROUP BY run_id
),
judged AS (
    SELECT s.run_id, m.step AS stop_step, b.step AS best_step, b.value AS best_val,
           l.last_step, f.best_before, f.best_after, f.best_after_step,
           (f.best_before - f.best_after) / abs(f.best_before) AS loss_gain,
           a.acc_before, a.acc_after, a.acc_after_step, a.acc_after - a.acc_before AS acc_gain,
           coalesce(a.scale, 1.0) AS scale,
           nd.patience_needed, x.step AS longer_stop  -- null: that patience trains to the end
    FROM stops s
    JOIN marks m ON m.run_id = s.run_id AND m.i = s.stop_i
    JOIN marks b ON b.run_id = s.run_id AND b.i = m.last_improved
    JOIN after f ON f.run_id = s.run_id
    JOIN needed nd ON nd.run_id = s.run_id
    JOIN last_steps l ON l.run_id = s.run_id
    LEFT JOIN marks x ON x.run_id = s.run_id AND x.i = nd.final_improved + nd.patience_needed
    LEFT JOIN acc a ON a.run_id = s.run_id
),
verdicts AS (
    SELECT *,
           coalesce(loss_gain, 0) <= $min_delta AS loss_flat,
           coalesce(acc_gain, 0) <= $acc_delta * scale AS acc_flat
    FROM judged
    WHERE last_step > stop_step
)
SELECT run_id,
       $metric || '/val' AS subject,
       stop_step AS step,
       CASE WHEN loss_flat AND acc_flat
            THEN printf('patience-based early stopping (patience %d) would have stopped at step %d, best at step %d (%.4g): %d of %d steps (%.0f%%) saved; the rest bought nothing on validation (its best %s after the stop, %s, is not %g%% below the best checkpoint before it, %.4g%s)',
                        $patience, stop_step, best_step, best_val, last_step - stop_step, last_step,
                        100.0 * (last_step - stop_step) / last_step, $metric,
                        coalesce(printf('%.4g', best_after), '-'), 100 * $min_delta, best_before,
                        CASE WHEN acc_after IS NULL THEN ''
                             ELSE printf('; %s %.4g after vs %.4g before', $acc_metric, acc_after, acc_before) END)
            WHEN NOT loss_flat
            THEN printf('patience-based early stopping (patience %d) would have stopped at step %d (best %s %.4g at step %d), too soon: the run still improved after it, validation %s %.4g -> %.4g by step %d (%.0f%% lower)%s; patience %d would have kept that%s',
                        $patience, stop_step, $metric, best_val, best_step, $metric,
                        best_before, best_after, best_after_step, 100 * loss_gain,
                        CASE WHEN NOT acc_flat
                             THEN printf(', %s %.4g -> %.4g by step %d', $acc_metric,
                                         acc_before, acc_after, acc_after_step)
                             ELSE '' END,
                        patience_needed,
                        CASE WHEN longer_stop < last_step
                             THEN printf(', stopping at step %d (%d of %d steps saved)', longer_stop,
                                         last_step - longer_stop, last_step)
                             ELSE ' and trained to the end' END)
            ELSE printf('patience-based early stopping (patience %d) on validation %s would have stopped at step %d (best %.4g at step %d), too soon for the accuracy: validation %s still rose from %.4g to %.4g by step %d while the loss improved no more than %.0f%%; stop on %s instead',
                        $patience, $metric, stop_step, best_val, best_step, $acc_metric,
                        acc_before, acc_after, acc_after_step, 100 * greatest(loss_gain, 0), $acc_metric)
       END AS message,
       json_object(
           'patience', $patience, 'min_delta', $min_delta, 'acc_delta', $acc_delta * scale,
           'stop_step', stop_step, 'best_step', best_step, 'best_val', best_val,
           'last_step', last_step, 'steps_saved', last_step - stop_step,
           'share_saved', (last_step - stop_step) / last_step,
           'bought_nothing', loss_flat AND acc_flat,
           'best_val_after_stop', best_after, 'best_val_after_stop_step', best_after_step,
           'val_gain_after_stop', loss_gain,
           'val_acc_before_stop', acc_before, 'val_acc_after_stop', acc_after,
           'val_acc_after_stop_step', acc_after_step, 'val_acc_gain_after_stop', acc_gain,
           'patience_needed', patience_needed, 'stop_with_patience_needed', longer_stop
       )::VARCHAR AS evidence
FROM verdicts
