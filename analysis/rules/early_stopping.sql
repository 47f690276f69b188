-- rule: early_stopping
-- severity: info
-- title: Early stopping point
-- requires: scalars:$metric/val>=3
-- param: metric = 'loss'
-- param: patience = 5
-- param: min_delta = 0.01
-- seed: part 3 §3 (early stopping), part 6 §3
-- suggestion: Stop at the best validation point (patience-based early stopping) and keep that checkpoint; the remaining steps buy nothing on validation.
-- Replays patience-based early stopping on the validation curve: a point improves when it
-- beats the best so far by min_delta (relative); training would have stopped at the first
-- point `patience` validation points after the last improvement.
WITH val AS (
    SELECT run_id, step, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n
    FROM scalars
    WHERE name = $metric AND split = 'val' AND isfinite(value)
),
flags AS (
    SELECT *,
           value < coalesce(
               min(value) OVER (PARTITION BY run_id ORDER BY i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               'inf'::DOUBLE
           ) * (1 - $min_delta) AS improved
    FROM val
),
marks AS (
    SELECT *,
           max(CASE WHEN improved THEN i END) OVER (PARTITION BY run_id ORDER BY i ROWS UNBOUNDED PRECEDING) AS last_improved
    FROM flags
),
stops AS (
    SELECT run_id, min(i) AS stop_i FROM marks
    WHERE i - last_improved >= $patience GROUP BY run_id
),
last_steps AS (
    SELECT run_id, max(step) AS last_step FROM scalars GROUP BY run_id
)
SELECT s.run_id,
       $metric || '/val' AS subject,
       m.step AS step,
       printf('patience-based early stopping (patience %d) would have stopped at step %d, best at step %d (%.4g): %d of %d steps (%.0f%%) saved',
              $patience, m.step, b.step, b.value, l.last_step - m.step, l.last_step,
              100.0 * (l.last_step - m.step) / l.last_step) AS message,
       json_object(
           'patience', $patience, 'min_delta', $min_delta,
           'stop_step', m.step, 'best_step', b.step, 'best_val', b.value,
           'last_step', l.last_step, 'steps_saved', l.last_step - m.step,
           'share_saved', (l.last_step - m.step) / l.last_step
       )::VARCHAR AS evidence
FROM stops s
JOIN marks m ON m.run_id = s.run_id AND m.i = s.stop_i
JOIN marks b ON b.run_id = s.run_id AND b.i = m.last_improved
JOIN last_steps l ON l.run_id = s.run_id
WHERE l.last_step > m.step
