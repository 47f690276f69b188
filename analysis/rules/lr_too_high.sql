-- rule: lr_too_high
-- severity: error
-- title: Learning rate too high
-- requires: scalars:$metric/train>=10
-- param: metric = 'loss'
-- param: half_window = 1
-- param: ratio = 4.0
-- param: k = 10.0
-- param: peak_before = 0.5
-- seed: part 6 §4 (learning rate too large: the loss jumps or grows; lower it), part 3 §2.2 (gradient clipping), part 5 §5.1 (learning-rate schedules and warm-up)
-- suggestion: Lower the learning rate 3-10x (or run an LR range test: raise it over ~100 steps from 1e-7 and take a value ~10x below where the loss turns up), and add warm-up; gradient clipping bounds the gradient, not Adam's step, so it does not fix a learning rate that is too high.
-- null: a healthy run's training loss falls from where it started; a transient rise early on (Adagrad's first steps, momentum on a regression) stays under 1.8x the first loss once smoothed over 3 steps (the corpus's 56 healthy runs, both halves: at most 1.77x, Adagrad at its default LR), and one bad batch is not a rise
-- false_alarms: none of the corpus's 56 healthy runs on either half (tests/corpus); the line, 4x the first loss, is 2.3x above the largest smoothed healthy rise, and the labelled runs reach 6-14x (a blow-up can last 3 steps before the net dies at chance: the smoothing must be short)
-- The first training loss is measured before any update (the loss of the batch that
-- made step 1): what the model's initialisation scores. A learning rate too high shows
-- as the loss rising far above that level, usually within the first steps (Adam's first
-- updates move every weight by about the learning rate). The curve is smoothed by a
-- centred running median over 2 * `half_window` + 1 finite points, so a single bad batch
-- is not a rise. The rule fires when the smoothed curve reaches `ratio` (2x) times the
-- first loss and the rise is at least `k` times the loss's own step-to-step noise (the
-- median absolute deviation of the points from the smoothed curve). One finding per run,
-- at the step of the peak, which must come in the first `peak_before` (half) of the run: a
-- learning rate too high throws the loss up and the run then stalls or crawls back,
-- while a loss that climbs to the end (a flipped sign, a NaN on the way) is
-- `divergence`'s to report. The message gives the learning rate the run used (the `lr`
-- scalar the collector records at every step) and the gradient norm before clipping
-- (system.grad_norm): with clip_grad_norm_ the recorded norm is flat at the threshold,
-- and only the pre-clip norm shows how large the gradients were. A loss that turns
-- NaN/Inf is `nonfinite`; one that keeps growing to the end is also `divergence`.
WITH points AS (
    SELECT run_id, step, avg(value) AS value
    FROM scalars
    WHERE name = $metric AND split = 'train' AND isfinite(value)
    GROUP BY run_id, step
),
smoothed AS (
    SELECT run_id, step, value,
           median(value) OVER (PARTITION BY run_id ORDER BY step
               ROWS BETWEEN $half_window PRECEDING AND $half_window FOLLOWING) AS level
    FROM points
),
curve AS (
    SELECT run_id,
           arg_min(value, step) AS first_loss, min(step) AS first_step,
           max(level) AS peak, arg_max(step, level) AS peak_step, max(step) AS last_step,
           median(abs(value - level)) AS noise,
           count(*) AS points
    FROM smoothed
    GROUP BY run_id
),
rates AS (
    SELECT run_id, arg_min(value, step) AS first_lr, max(value) AS max_lr
    FROM scalars
    WHERE name = 'lr' AND split = 'train' AND isfinite(value)
    GROUP BY run_id
),
grads AS (
    SELECT run_id,
           max(grad_norm) FILTER (WHERE isfinite(grad_norm)) AS max_norm,
           median(grad_norm) FILTER (WHERE isfinite(grad_norm)) AS median_norm,
           count(clip_ratio) AS clipped, count(grad_norm) AS normed,
           median(grad_norm_step) FILTER (WHERE clip_ratio IS NOT NULL) AS clipped_to
    FROM system
    GROUP BY run_id
)
SELECT c.run_id,
       $metric || '/train' AS subject,
       c.peak_step AS step,
       printf('the learning rate is too high: the training %s rose far above where it started, from %.4g at step %d to %.4g (%.1fx; the median of the %d logged steps around step %d), %.0f times its step-to-step noise%s%s',
              $metric, c.first_loss, c.first_step, c.peak, c.peak / c.first_loss,
              2 * $half_window + 1, c.peak_step, coalesce((c.peak - c.first_loss) / nullif(c.noise, 0), 'inf'::DOUBLE),
              CASE WHEN r.max_lr IS NOT NULL
                   THEN printf('; learning rate %.3g%s', r.first_lr,
                               CASE WHEN r.max_lr > r.first_lr * 1.0001
                                    THEN printf(' (peak %.3g)', r.max_lr) ELSE '' END)
                   ELSE '' END,
              CASE WHEN g.clipped > 0
                   THEN printf('; the gradient norm before clipping reached %.3g (median %.3g), clipped to %.3g on %d of %d steps, so the recorded norm after clipping hides it',
                               g.max_norm, g.median_norm, g.clipped_to, g.clipped, g.normed)
                   WHEN g.max_norm IS NOT NULL
                   THEN printf('; the gradient norm reached %.3g (median %.3g)', g.max_norm, g.median_norm)
                   ELSE '' END) AS message,
       CASE WHEN r.max_lr IS NOT NULL
            THEN printf('Lower the learning rate from %.3g to %.2g-%.2g (3-10x lower), or run an LR range test (raise it over ~100 steps from 1e-7 and take ~10x below where the loss turns up), and add warm-up; gradient clipping bounds the gradient, not Adam''s step, so it does not fix a learning rate that is too high.',
                        r.max_lr, r.max_lr / 10, r.max_lr / 3)
       END AS suggestion,
       json_object(
           'first_loss', c.first_loss, 'first_step', c.first_step,
           'peak', c.peak, 'peak_step', c.peak_step, 'rise', c.peak / c.first_loss,
           'noise', c.noise, 'points', c.points,
           'lr', r.first_lr, 'max_lr', r.max_lr,
           'max_grad_norm_before_clipping', g.max_norm, 'median_grad_norm', g.median_norm,
           'clipped_steps', g.clipped, 'steps_with_norm', g.normed, 'clipped_to', g.clipped_to,
           'half_window', $half_window, 'ratio', $ratio, 'k', $k, 'peak_before', $peak_before
       )::VARCHAR AS evidence
FROM curve c
LEFT JOIN rates r USING (run_id)
LEFT JOIN grads g USING (run_id)
WHERE c.first_loss > 0
  AND c.peak >= $ratio * c.first_loss
  AND c.peak - c.first_loss >= $k * c.noise
  AND c.peak_step <= c.first_step + $peak_before * (c.last_step - c.first_step)
