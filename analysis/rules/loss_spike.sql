-- rule: loss_spike
-- severity: warning
-- title: Loss spikes
-- requires: scalars:$metric/train>=30
-- param: metric = 'loss'
-- param: window = 20
-- param: k = 6.0
-- param: min_rise = 1.0
-- param: min_height = 0.1
-- param: recovery = 20
-- param: recover_frac = 0.2
-- seed: part 3 §2.2 (the loss suddenly makes very large jumps), part 6 §4 (learning rate too large), part 6 §4.2 (unnormalised data)
-- suggestion: Clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)), lower the learning rate or add warm-up, and look at the batches of the spike steps (outliers, corrupt or unnormalised samples); with Adam, a larger eps also damps the steps that follow a rare large gradient.
-- A spike is a point far above the training loss's own robust baseline, followed by a
-- return to it. Baseline: the rolling median of the previous `window` finite points.
-- Noise: sigma = median(|x[t] - x[t-1]|) / (0.6745 * sqrt(2)) over the same window, the
-- Donoho-Johnstone MAD estimate from first differences: a falling trend does not pass
-- for noise, as it would in the MAD of the values themselves. No point is judged before
-- a full window. A point is a spike when all three hold:
--   above baseline + k * sigma              robust outlier test (Hampel/MAD); k = 6 is far
--                                           beyond minibatch noise (a normal tail of ~1e-9)
--   above (1 + min_rise) * |baseline|       the loss at least doubles: MosaicML's
--                                           KillLossSpike flags loss > 2x its running mean,
--                                           Lightning's SpikeDetection > 3x (rtol 2.0)
--   above baseline + min_height * |start|   the jump undoes a visible share (10%) of the
--                                           scale the run started at (median of its first
--                                           window): a 3x blip at a converged loss of 0.01
--                                           is minibatch noise, not an event
-- Consecutive spike points make one spike. It counts only if the loss comes back within
-- recover_frac of the jump height above the baseline within `recovery` points; a jump
-- that stays up (or turns NaN) is a level shift or `divergence`, not a transient spike.
-- One finding per run; the evidence lists every recovered spike.
WITH points AS (  -- one value per step (ranks averaged: the global batch's loss)
    SELECT run_id, step, avg(value) AS value
    FROM scalars
    WHERE name = $metric AND split = 'train'
    GROUP BY run_id, step
),
train AS (
    SELECT run_id, step, value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i,
           abs(value - lag(value) OVER (PARTITION BY run_id ORDER BY step)) AS jump
    FROM points
    WHERE isfinite(value)
),
start AS (
    SELECT run_id, median(value) AS start_level FROM train WHERE i <= $window GROUP BY run_id
),
baselined AS (
    SELECT t.*, s.start_level,
           median(t.value) OVER w AS baseline,
           median(t.jump) OVER w / (0.6745 * sqrt(2)) AS sigma
    FROM train t JOIN start s USING (run_id)
    WINDOW w AS (PARTITION BY t.run_id ORDER BY t.i ROWS BETWEEN $window PRECEDING AND 1 PRECEDING)
),
flagged AS (
    SELECT *, i - row_number() OVER (PARTITION BY run_id ORDER BY i) AS island
    FROM baselined
    WHERE i > $window
      AND value > baseline + $k * sigma
      AND value > baseline + $min_rise * abs(baseline)
      AND value > baseline + $min_height * abs(start_level)
),
spikes AS (
    SELECT run_id, island,
           min(step) AS step, max(i) AS last_i, count(*) AS points,
           max(value) AS peak, arg_max(step, value) AS peak_step,
           arg_min(baseline, i) AS baseline, arg_min(sigma, i) AS sigma
    FROM flagged
    GROUP BY run_id, island
),
recovered AS (
    SELECT s.run_id, s.step, s.points, s.peak, s.peak_step, s.baseline,
           coalesce(s.peak / nullif(abs(s.baseline), 0), 'inf'::DOUBLE) AS ratio,
           coalesce((s.peak - s.baseline) / nullif(s.sigma, 0), 'inf'::DOUBLE) AS sigmas,
           min(t.step) AS back_step
    FROM spikes s
    JOIN train t ON t.run_id = s.run_id AND t.i > s.last_i AND t.i <= s.last_i + $recovery
    WHERE t.value <= s.baseline + $recover_frac * (s.peak - s.baseline)
    GROUP BY ALL
),
unrecovered AS (
    SELECT s.run_id, count(*) AS jumps
    FROM spikes s ANTI JOIN recovered r ON r.run_id = s.run_id AND r.step = s.step
    GROUP BY s.run_id
)
SELECT r.run_id,
       $metric || '/train' AS subject,
       min(r.step) AS step,
       printf('training %s spiked %d time(s) and came back each time: first at step %d to %.4g, %.1fx its rolling median %.4g (%.0f robust sigmas above it), back near it by step %d; highest %.4g at step %d',
              $metric, count(*), min(r.step), arg_min(r.peak, r.step),
              arg_min(r.ratio, r.step), arg_min(r.baseline, r.step),
              arg_min(r.sigmas, r.step), arg_min(r.back_step, r.step),
              max(r.peak), arg_max(r.peak_step, r.peak)) AS message,
       json_object(
           'spikes', to_json(list(json_object(
               'step', r.step, 'peak_step', r.peak_step, 'peak', r.peak,
               'baseline', r.baseline, 'ratio', r.ratio, 'sigmas', r.sigmas,
               'points', r.points, 'recovered_by_step', r.back_step) ORDER BY r.step)),
           'count', count(*), 'highest', max(r.peak),
           'unrecovered_jumps', coalesce(any_value(u.jumps), 0),
           'window', $window, 'k', $k, 'min_rise', $min_rise, 'min_height', $min_height,
           'recovery', $recovery, 'recover_frac', $recover_frac
       )::VARCHAR AS evidence
FROM recovered r
LEFT JOIN unrecovered u USING (run_id)
GROUP BY r.run_id
