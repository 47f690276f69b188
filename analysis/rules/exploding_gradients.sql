-- rule: exploding_gradients
-- severity: error
-- title: Exploding gradients
-- requires: tensors:grad>=10
-- param: factor = 10.0
-- param: sigmas = 6.0
-- param: window = 50
-- param: metric = 'loss'
-- param: loss_before = 20
-- param: loss_after = 5
-- param: loss_rise = 2.0
-- seed: part 2 §3, part 3 §2.2 (very large gradients, loss jumps), part 6 §2
-- suggestion: Clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)), lower the learning rate, normalise inputs, and use He/Xavier initialisation or normalisation layers.
-- null: the global gradient norm of a healthy run wanders on a log scale: it drifts (it grows as a net leaves a small initialisation or starts to learn, shrinks as it converges) and a single batch can push it up for one step (a 2-row last batch under BatchNorm), but the training loss does not get worse after such a step
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs: no gradient jump above 4.3x the rolling median, so none fired; the loss link is what keeps one-step jumps of healthy runs silent)
-- An explosion is a jump that breaks the run, so both must be seen.
-- The jump: on a sampled step the global gradient norm (over all watched parameters) is
-- above its baseline, the median of its previous `window` samples, by more than `factor`
-- times and by more than `sigmas` robust standard deviations of the run's own
-- step-to-step noise (on ln(norm): 1.048 x the median |change| over the same window, so
-- a run whose norm routinely swings 3x needs more than one that is steady). It is judged
-- from the second sample on, against the first samples' own scale (explosions often
-- happen in the first steps).
-- The consequence, which a drift (a net leaving a tiny initialisation, an LSTM starting
-- to learn: its norm can outrun a 50-sample median 10x) and a one-step jump (a 2-row
-- last batch under BatchNorm) do not have: over the next `loss_after` points after the
-- jump step the training loss went non-finite, or its median ended at least `loss_rise`
-- times its level before the jump (the median of the previous `loss_before` points) and
-- above the jump step's own loss, or the gradient norm itself went NaN/Inf. The jump
-- step's own loss is not a consequence: the batch that made the large gradient made that
-- loss too; and a loss that was already up at the jump step and falls after it was broken
-- by an earlier update, not by this gradient (Adam at 100x its learning rate). A run that
-- logs no training loss is judged on the gradient alone: the jump must persist (the
-- median of the next `loss_after` norms stays above the bar). One finding per run, at
-- the first jump that broke the run; the evidence counts every jump, harmful or not.
WITH per_step AS (  -- NaN rows stay: a gradient that goes NaN after a jump is a consequence
    SELECT run_id, step, sqrt(sum(norm * norm)) AS grad_norm,
           arg_max(param, norm) FILTER (WHERE NOT isnan(norm)) AS top_param,
           max(norm) FILTER (WHERE NOT isnan(norm)) AS top_norm
    FROM tensors
    WHERE kind = 'grad'
    GROUP BY run_id, step
),
logged AS (  -- the log of the norm: +Inf stays +Inf; NaN and zero norms have none
    SELECT *, x - lag(x) OVER (PARTITION BY run_id ORDER BY step) AS dx
    FROM (SELECT *, CASE WHEN grad_norm > 0 AND NOT isnan(grad_norm) THEN ln(grad_norm) END AS x
          FROM per_step)
),
baselined AS (
    SELECT *,
           median(x) OVER past AS base,
           1.048 * median(CASE WHEN isfinite(dx) THEN abs(dx) END) OVER past AS noise,
           count(x) OVER past AS history,
           count(*) FILTER (WHERE NOT isfinite(grad_norm)) OVER next AS nonfinite_next,
           median(x) OVER next AS x_next
    FROM logged
    WINDOW past AS (PARTITION BY run_id ORDER BY step
                    ROWS BETWEEN $window PRECEDING AND 1 PRECEDING),
           next AS (PARTITION BY run_id ORDER BY step
                    ROWS BETWEEN 1 FOLLOWING AND $loss_after FOLLOWING)
),
jumps AS (
    SELECT *, greatest(ln($factor), $sigmas * coalesce(noise, 0)) AS bar
    FROM baselined
    WHERE history >= 1 AND isfinite(base) AND x IS NOT NULL
      AND x - base > greatest(ln($factor), $sigmas * coalesce(noise, 0))
),
curve AS (  -- one point per step: the mean of its rows (ranks, micro-batches)
    SELECT run_id, step, CASE WHEN isfinite(value) THEN value ELSE 'inf'::DOUBLE END AS value,
           NOT isfinite(value) AS nonfinite
    FROM (SELECT run_id, step, avg(value) AS value
          FROM scalars
          WHERE name = $metric AND split = 'train'
          GROUP BY run_id, step)
),
around AS (  -- at each loss point: its level so far, and what the next points did
    SELECT run_id, step, value,
           median(value) FILTER (WHERE NOT nonfinite) OVER past AS level_before,
           median(value) OVER next AS level_after,
           max(value) OVER next AS max_after,
           min(step) FILTER (WHERE nonfinite) OVER next AS nonfinite_step,
           count(*) OVER next AS points_after
    FROM curve
    WINDOW past AS (PARTITION BY run_id ORDER BY step
                    ROWS BETWEEN $loss_before - 1 PRECEDING AND CURRENT ROW),
           next AS (PARTITION BY run_id ORDER BY step
                    ROWS BETWEEN 1 FOLLOWING AND $loss_after FOLLOWING)
),
has_loss AS (SELECT DISTINCT run_id FROM curve),
judged AS (
    -- before: the loss up to the step before the jump; after: the points after the jump
    -- step (from the last loss point at or before it)
    SELECT j.*, b.level_before, a.level_after, a.max_after, a.nonfinite_step, a.points_after,
           CASE WHEN a.step = j.step THEN a.value END AS loss_at_jump,
           CASE
               WHEN a.nonfinite_step IS NOT NULL THEN 'loss_nonfinite'
               -- rose over its level, and kept rising past the jump step's own loss (else
               -- the damage came before this gradient: it is not the cause)
               WHEN a.points_after > 0 AND b.level_before > 0
                    AND a.level_after >= $loss_rise * b.level_before
                    AND a.level_after > coalesce(CASE WHEN a.step = j.step THEN a.value END, 0)
                    THEN 'loss_rose'
               WHEN j.nonfinite_next > 0 THEN 'gradient_nonfinite'
               WHEN h.run_id IS NULL AND j.x_next - j.base > j.bar THEN 'persisted'
           END AS consequence
    FROM jumps j
    LEFT JOIN has_loss h USING (run_id)
    ASOF LEFT JOIN around b ON b.run_id = j.run_id AND b.step < j.step
    ASOF LEFT JOIN around a ON a.run_id = j.run_id AND a.step <= j.step
),
harmful AS (
    SELECT * FROM judged WHERE consequence IS NOT NULL
),
counts AS (
    SELECT run_id, count(*) AS jumps, max(grad_norm) AS peak FROM jumps GROUP BY run_id
)
SELECT h.run_id,
       arg_min(h.top_param, h.step) AS subject,
       min(h.step) AS step,
       printf('global gradient norm jumped to %.3g at step %d, %.0fx its baseline %.3g (median of the %d samples before; bar %.0fx: %gx or %g robust sigmas of its own noise) and %s (largest gradient: %s, %.3g); %d of %d jumps did harm, peak %.3g',
              arg_min(h.grad_norm, h.step), min(h.step),
              exp(arg_min(h.x - h.base, h.step)), exp(arg_min(h.base, h.step)),
              arg_min(h.history, h.step), exp(arg_min(h.bar, h.step)), $factor, $sigmas,
              CASE arg_min(h.consequence, h.step)
                  WHEN 'gradient_nonfinite' THEN 'the gradient went NaN/Inf within the next samples'
                  WHEN 'loss_nonfinite' THEN printf('the training loss went non-finite at step %d',
                                                    arg_min(h.nonfinite_step, h.step))
                  WHEN 'loss_rose' THEN printf('the training loss then rose from %.3g to %.3g (median of the next %d points, %.1fx)',
                                               arg_min(h.level_before, h.step), arg_min(h.level_after, h.step),
                                               arg_min(h.points_after, h.step),
                                               arg_min(h.level_after / h.level_before, h.step))
                  ELSE 'it stayed there (no training loss to judge the damage by)'
              END,
              arg_min(h.top_param, h.step), arg_min(h.top_norm, h.step),
              count(*), any_value(c.jumps), any_value(c.peak)) AS message,
       json_object(
           'first_step', min(h.step), 'grad_norm', arg_min(h.grad_norm, h.step),
           'baseline', exp(arg_min(h.base, h.step)),
           'ratio', exp(arg_min(h.x - h.base, h.step)),
           'noise_sigma_ln', arg_min(h.noise, h.step), 'bar_ratio', exp(arg_min(h.bar, h.step)),
           'history', arg_min(h.history, h.step),
           'consequence', arg_min(h.consequence, h.step),
           'loss_before', arg_min(h.level_before, h.step),
           'loss_after', arg_min(h.level_after, h.step),
           'loss_after_max', arg_min(h.max_after, h.step),
           'loss_nonfinite_step', arg_min(h.nonfinite_step, h.step),
           'harmful_jumps', count(*), 'jumps', any_value(c.jumps),
           'peak_grad_norm', any_value(c.peak), 'largest_param', arg_min(h.top_param, h.step),
           'factor', $factor, 'sigmas', $sigmas, 'loss_rise', $loss_rise
       )::VARCHAR AS evidence
FROM harmful h
JOIN counts c USING (run_id)
GROUP BY h.run_id
