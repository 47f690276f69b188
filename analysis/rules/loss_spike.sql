-- rule: loss_spike
-- severity: warning
-- title: Loss spikes
-- requires: scalars:$metric/train>=50
-- param: metric = 'loss'
-- param: neighbours = 10
-- param: tail_quantile = 0.9
-- param: k = 8.0
-- param: min_rise = 1.0
-- param: min_height = 0.1
-- param: recovery = 20
-- param: recover_frac = 0.2
-- seed: part 3 §2.2 (the loss suddenly makes very large jumps), part 6 §4 (learning rate too large), part 6 §4.2 (unnormalised data)
-- suggestion: Look at the batches of the spike steps first (corrupt or mislabelled samples, outliers, unnormalised inputs); if the data is clean, clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)), lower the learning rate or add warm-up; with Adam, a larger eps also damps the steps that follow a rare large gradient.
-- null: a healthy run's per-step loss scatters around its local level with the heavy right tail of minibatch noise (small batches, a converged cross-entropy or a regression target draw one-step blips of 2-25x the local median); the size of that tail is the run's own: the spread of log(loss / local median) between its median and 90th percentile, 0.07-1.2 on the corpus's healthy runs
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs, 3,583 judged steps: the largest blip 2.95 spreads above the median, the labelled spikes 9.1-21); k = 8 holds the budget for the heaviest tail seen there, an exponential one (Laplace: 0.5 * 5^-8 = 1.3e-6 of steps beyond the line), and the pooled tail falls faster (~14x per spread: ~1e-9)
-- A spike is a point far above the training loss's local level, rare for this run's own
-- noise, and followed by a return to that level. The local level is the median of the
-- `neighbours` finite points on either side (the point itself left out): a centred
-- median does not lag a falling curve, as a trailing one would, so the descent does not
-- pass for noise. Points are judged once they have `neighbours` points before them (a
-- window that leads at the start of a falling curve would make every early point look
-- high); towards the end of the run the window holds fewer points after them. Each
-- point's residual is r = ln(loss / local level), and the run's noise is the
-- distribution of r over all its judged points: spread = q(tail_quantile) - median.
-- This is the upper tail of minibatch noise measured where it matters, not a Gaussian
-- sigma: per-example losses are skewed, so batches of 4-16 draw blips of many times the
-- median as a matter of course, and a batch of 512 almost never does. The quantile is
-- robust to the spikes it looks for as long as they are under 10% of the points. A
-- point is a spike when all three hold:
--   r > median + k * spread               rare: k is set by the tail's shape, which the
--                                          90th percentile alone does not give. On the
--                                          tuning half's healthy runs the 99th percentile
--                                          sits 1.3-2.5 spreads out: between a Gaussian
--                                          tail (1.8) and an exponential one (2.4), none
--                                          beyond 3 spreads in 3,583 steps; a random-label
--                                          batch sits 9-21 spreads out
--   above (1 + min_rise) * local level     the loss at least doubles: MosaicML's
--                                          KillLossSpike flags loss > 2x its running mean,
--                                          Lightning's SpikeDetection > 3x (rtol 2.0)
--   above level + min_height * |start|     the jump undoes a visible share (10%) of the
--                                          scale the run started at (median of its first
--                                          2 * neighbours points): a 3x blip at a
--                                          converged loss of 0.01 is not an event
-- Consecutive spike points make one spike. It counts only if the loss comes back within
-- recover_frac of the jump height above the level within `recovery` points; a jump that
-- stays up (or turns NaN) is a level shift or `divergence`, not a transient spike. A
-- step's residual is weighed by its batch size (system.batch_size, the examples of the
-- step's training forwards): r * min(1, sqrt(n / typical n)), since the noise of a mean
-- over n examples grows as 1/sqrt(n). The last batch of an epoch is often much smaller
-- (drop_last=False: 1-2 rows) and its loss jumps as a matter of course; weighed, it is
-- judged against the noise its size allows (a batch of 1 among batches of 64 needs an 8x
-- larger residual). On runs without batch sizes (imported logs, older stores), a spike
-- of one point at the last step of an epoch (of two or more logged steps) is not
-- counted instead; the evidence counts those apart.
-- Points where the loss or its level is not positive are not judged (log-likelihoods).
-- One finding per run; the evidence lists every recovered spike.
WITH points AS (  -- one value per step (ranks averaged: the global batch's loss)
    SELECT run_id, step, avg(value) AS value, max(epoch) AS epoch
    FROM scalars
    WHERE name = $metric AND split = 'train'
    GROUP BY run_id, step
),
batches AS (  -- examples behind each step (ranks summed), where the collector counted them
    SELECT run_id, step, sum(batch_size) AS batch
    FROM system
    WHERE batch_size > 0
    GROUP BY run_id, step
),
typical AS (
    SELECT run_id, median(batch) AS typical_batch FROM batches GROUP BY run_id
),
train AS (
    SELECT p.run_id, p.step, p.value,
           row_number() OVER w AS i,
           -- the noise of a mean over n examples grows as 1/sqrt(n): a step's residual
           -- is weighed down by sqrt(n / typical n) when its batch was smaller
           least(1.0, sqrt(b.batch / t.typical_batch)) AS weight,
           -- the last logged step of an epoch that has more than one (used when the
           -- batch sizes are unknown: imported runs, older stores)
           t.typical_batch IS NULL
               AND coalesce(lead(p.epoch) OVER w <> p.epoch, false)
               AND count(*) OVER (PARTITION BY p.run_id, p.epoch) >= 2 AS epoch_end
    FROM points p
    LEFT JOIN batches b USING (run_id, step)
    LEFT JOIN typical t USING (run_id)
    WHERE isfinite(p.value)
    WINDOW w AS (PARTITION BY p.run_id ORDER BY p.step)
),
start AS (
    SELECT run_id, median(value) AS start_level
    FROM train WHERE i <= 2 * $neighbours GROUP BY run_id
),
leveled AS (
    SELECT t.*, s.start_level,
           -- the median of the window's list: the same value as a windowed median(),
           -- which with EXCLUDE CURRENT ROW costs twice as much on a long curve
           list_median(list(t.value) OVER (
               PARTITION BY t.run_id ORDER BY t.i
               ROWS BETWEEN $neighbours PRECEDING AND $neighbours FOLLOWING EXCLUDE CURRENT ROW
           )) AS level
    FROM train t JOIN start s USING (run_id)
),
judged AS (  -- points with a full neighbourhood before them (the last ones have fewer after)
    SELECT *,
           CASE WHEN value > 0 AND level > 0
                THEN ln(value / level) * coalesce(weight, 1.0) END AS r
    FROM leveled
    WHERE i > $neighbours
),
noise AS (
    SELECT run_id, median(r) AS r_median,
           quantile_cont(r, $tail_quantile) - median(r) AS spread,
           count(r) AS judged_points
    FROM judged GROUP BY run_id
),
flagged AS (
    SELECT j.*, n.r_median, n.spread,
           i - row_number() OVER (PARTITION BY j.run_id ORDER BY i) AS island
    FROM judged j JOIN noise n USING (run_id)
    WHERE r > n.r_median + $k * n.spread
      AND value > level + $min_rise * abs(level)
      AND value > level + $min_height * abs(start_level)
),
islands AS (
    SELECT run_id, island,
           min(step) AS step, max(i) AS last_i, count(*) AS points,
           max(value) AS peak, arg_max(step, value) AS peak_step,
           arg_max(level, value) AS level,
           (ln(max(value) / arg_max(level, value)) - any_value(r_median))
               / nullif(any_value(spread), 0) AS spreads,
           count(*) = 1 AND bool_and(epoch_end) AS last_batch
    FROM flagged
    GROUP BY run_id, island
),
spikes AS (
    SELECT * FROM islands WHERE NOT last_batch
),
recovered AS (
    SELECT s.run_id, s.step, s.points, s.peak, s.peak_step, s.level,
           s.peak / s.level AS ratio,
           coalesce(s.spreads, 'inf'::DOUBLE) AS spreads,
           min(t.step) AS back_step
    FROM spikes s
    JOIN train t ON t.run_id = s.run_id AND t.i > s.last_i AND t.i <= s.last_i + $recovery
    WHERE t.value <= s.level + $recover_frac * (s.peak - s.level)
    GROUP BY ALL
),
unrecovered AS (
    SELECT s.run_id, count(*) AS jumps
    FROM spikes s ANTI JOIN recovered r ON r.run_id = s.run_id AND r.step = s.step
    GROUP BY s.run_id
),
last_batches AS (
    SELECT run_id, count(*) AS blips FROM islands WHERE last_batch GROUP BY run_id
)
SELECT r.run_id,
       $metric || '/train' AS subject,
       min(r.step) AS step,
       printf('training %s spiked %d time(s) and came back each time: first at step %d to %.4g, %.1fx its local median %.4g (back near it by step %d); highest %.4g at step %d. Rare for this run: %.0f%% of its steps stay under %.2fx their local median, and the first spike sits %.1f spreads of that noise above it (the line: %.0f spreads, %.2fx)',
              $metric, count(*), min(r.step), arg_min(r.peak, r.step),
              arg_min(r.ratio, r.step), arg_min(r.level, r.step),
              arg_min(r.back_step, r.step), max(r.peak), arg_max(r.peak_step, r.peak),
              100 * $tail_quantile, exp(any_value(n.r_median) + any_value(n.spread)),
              arg_min(r.spreads, r.step), $k,
              greatest(1 + $min_rise, exp(any_value(n.r_median) + $k * any_value(n.spread)))) AS message,
       json_object(
           'spikes', to_json(list(json_object(
               'step', r.step, 'peak_step', r.peak_step, 'peak', r.peak,
               'local_median', r.level, 'ratio', r.ratio, 'spreads', r.spreads,
               'points', r.points, 'recovered_by_step', r.back_step) ORDER BY r.step)),
           'count', count(*), 'highest', max(r.peak),
           'unrecovered_jumps', coalesce(any_value(u.jumps), 0),
           'epoch_end_blips', coalesce(any_value(b.blips), 0),
           'log_ratio_median', any_value(n.r_median), 'log_ratio_spread', any_value(n.spread),
           'tail_ratio', exp(any_value(n.r_median) + any_value(n.spread)),
           'threshold_ratio', greatest(1 + $min_rise,
                                       exp(any_value(n.r_median) + $k * any_value(n.spread))),
           'judged_points', any_value(n.judged_points),
           'neighbours', $neighbours, 'tail_quantile', $tail_quantile, 'k', $k,
           'min_rise', $min_rise, 'min_height', $min_height,
           'recovery', $recovery, 'recover_frac', $recover_frac
       )::VARCHAR AS evidence
FROM recovered r
JOIN noise n USING (run_id)
LEFT JOIN unrecovered u USING (run_id)
LEFT JOIN last_batches b USING (run_id)
GROUP BY r.run_id
