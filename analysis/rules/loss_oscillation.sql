-- rule: loss_oscillation
-- severity: warning
-- title: Oscillating loss
-- when: ended
-- requires: scalars:$metric/train>=40
-- param: metric = 'loss'
-- param: tail_frac = 0.5
-- param: start_points = 10
-- param: min_amplitude = 0.1
-- param: min_to_level = 0.5
-- param: min_flips = 0.9
-- seed: part 2 §5 (the training curve is not smooth: adjust the batch size and the learning rate, or the optimizer), part 6 §4.1 (learning rate too large: the loss oscillates and does not converge), part 3 §2.2
-- suggestion: Lower the learning rate or decay it (StepLR, ReduceLROnPlateau), or raise the batch size (scaling the learning rate with it, as part 2 §5 pairs them); an adaptive optimizer (Adam) and gradient clipping (clip_grad_norm_) also smooth the steps.
-- null: over a healthy run's last half the loss scatters around a flat or falling trend with the minibatch noise it cannot avoid, sigma ~ CV * L / sqrt(B): either small against the scale the run started at (a converged loss, even at batch 4-8 where the noise is as large as the level) or, at a high floor (a regression target's R^2 ~0.5, a hard task), a modest share of its own level (0.2-0.4 L at B >= 16); white noise, whose consecutive differences change sign 2 times in 3
-- false_alarms: under 1 % of healthy runs of 10k steps: both statistics are taken over the whole last half (a median, a share), so a longer run estimates them better instead of drawing more chances (white noise reaches a 0.9 share of sign changes over 20 points 4 times in 1,000, over 40 points 1 in 13,000); calibrated on the tuning half of tests/corpus (23 healthy runs: none fired; the closest, a logistic regression at batch 16 on a 120-row table, has noise 12% of its scale but 0.41 of its level; sign-change shares 0.60-0.79). Not told apart: a batch of 8 or fewer on a task whose loss floors high (CV / sqrt(B) >= 0.5 of a level above ~20% of the start)
-- How far the training loss jumps from one logged point to the next, over the last
-- `tail_frac` of the run: sigma = median(|x[t] - x[t-1]|) / (0.6745 * sqrt(2)), the
-- Donoho-Johnstone MAD estimate of the noise level from first differences (the finest
-- Haar details). A slow trend barely moves it, one spike is one difference among many,
-- and a zigzag of +-A gives ~2.1 A. The LR-too-high symptom is a bounce that is large
-- on both of the loss's scales, or a regular one. It fires when sigma is at least
-- min_amplitude (10%) of the scale of the problem (the larger of the loss the run
-- started at, the median of its first start_points points, and the tail's median
-- level: relative to a loss near zero any curve is noisy), and either
--   sigma >= min_to_level * the tail's level   the loss bounces by half its own level
--                                              from step to step: minibatch noise at a
--                                              high floor is CV / sqrt(B) of it (R^2 ~0.5
--                                              regression at B = 16: ~0.4), and where it is
--                                              as large as the level (small batches, a
--                                              converged cross-entropy) the level is far
--                                              below the start, which the first test holds;
--                                              too large a learning rate: 0.58-1.2
--   sign changes >= min_flips                  a regular zigzag, up, down, up: white noise
--                                              changes the sign of its differences 2 times
--                                              in 3 (0.60-0.79 on healthy runs' tails)
-- Minibatch noise is sigma ~ CV * L / sqrt(B) for per-example losses with coefficient
-- of variation CV (~1 for a cross-entropy) at level L and batch size B: under 10% of the
-- start for B >= 16 once L is below ~40% of it (the demo's healthy CNN, batch 64: 2.5%,
-- though 47% of its own late level; +-5% multiplicative noise: <= 3% of its level).
-- Runs whose loss became non-finite are left to `divergence`.
WITH points AS (  -- one value per step (ranks averaged: the global batch's loss)
    SELECT run_id, step, avg(value) AS value
    FROM scalars
    WHERE name = $metric AND split = 'train'
    GROUP BY run_id, step
),
broken AS (
    SELECT DISTINCT run_id FROM points WHERE NOT isfinite(value)
),
train AS (
    SELECT run_id, step, value,
           value - lag(value) OVER (PARTITION BY run_id ORDER BY step) AS diff,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id) AS n
    FROM points
    WHERE run_id NOT IN (SELECT run_id FROM broken)
),
judged AS (
    SELECT run_id,
           median(value) FILTER (WHERE i <= $start_points) AS start_level,
           median(value) FILTER (WHERE tail) AS tail_level,
           median(abs(diff)) FILTER (WHERE tail) / (0.6745 * sqrt(2)) AS sigma,
           quantile_cont(abs(diff), 0.9) FILTER (WHERE tail) AS p90_jump,
           -- share of consecutive differences that change sign (1/2 for white noise, ~1 for a zigzag)
           avg(CASE WHEN sign(diff) * sign(prev_diff) < 0 THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE tail AND prev_diff IS NOT NULL) AS sign_flips,
           count(*) FILTER (WHERE tail) AS points,
           min(step) FILTER (WHERE tail) AS from_step, max(step) AS to_step
    FROM (
        SELECT *, i > n - ceil(n * $tail_frac) AS tail,
               lag(diff) OVER (PARTITION BY run_id ORDER BY step) AS prev_diff
        FROM train
    )
    GROUP BY run_id
)
SELECT run_id,
       $metric || '/train' AS subject,
       from_step AS step,
       printf('training %s oscillates: over its last %d points (steps %d-%d) it jumps by a typical %.3g from one point to the next (noise sigma %.3g: %.0f%% of the loss scale %.4g and %.0f%% of the level it sits around; it started at %.4g, now %.4g)%s; every 10th jump exceeds %.3g',
              $metric, points, from_step, to_step, sigma * 0.6745 * sqrt(2), sigma,
              100 * sigma / greatest(abs(start_level), abs(tail_level)),
              greatest(abs(start_level), abs(tail_level)),
              100 * sigma / nullif(abs(tail_level), 0), start_level, tail_level,
              CASE WHEN sign_flips >= $min_flips
                   THEN printf('; a zigzag: %.0f%% of its steps reverse the one before (white noise: 67%%)', 100 * sign_flips)
                   ELSE '' END,
              p90_jump) AS message,
       json_object(
           'sigma', sigma, 'median_jump', sigma * 0.6745 * sqrt(2), 'p90_jump', p90_jump,
           'relative_sigma', sigma / greatest(abs(start_level), abs(tail_level)),
           'sigma_to_level', sigma / nullif(abs(tail_level), 0),
           'start_level', start_level, 'tail_level', tail_level,
           'sign_flip_share', sign_flips,
           'bounces_by_level', sigma >= $min_to_level * abs(tail_level),
           'zigzag', coalesce(sign_flips >= $min_flips, false),
           'points', points, 'from_step', from_step, 'to_step', to_step,
           'min_amplitude', $min_amplitude, 'min_to_level', $min_to_level,
           'min_flips', $min_flips
       )::VARCHAR AS evidence
FROM judged
WHERE sigma > 0
  AND sigma >= $min_amplitude * greatest(abs(start_level), abs(tail_level))
  AND (sigma >= $min_to_level * abs(tail_level) OR sign_flips >= $min_flips)
