-- rule: stalled_parameters
-- severity: warning
-- title: Parameters that never change
-- requires: tensors:grad>=5, tensors:update>=5
-- param: min_grad_ratio = 6e-8
-- param: sustained = 0.9
-- param: min_samples = 5
-- seed: part 2 §5 (loss not decreasing: check that the gradients update the weights), part 3 §2.1 (some layers' weights barely change)
-- suggestion: Check that the parameter is in the optimizer (build the optimizer after the model is complete, from model.parameters(), including layers added or replaced later), and that its param group's learning rate is not 0 (a scheduler or a param-group override that zeroes it); freeze on purpose with requires_grad_(False) instead, so that no gradient is computed for it.
-- null: in a healthy run an optimizer step moves every parameter that has a real gradient; an exact-zero update happens only on an occasional skipped step (AMP's GradScaler on an overflow, a learning rate that starts at 0) (the tuning half of tests/corpus: no parameter with a zero update on more than 1% of its sampled steps)
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs: none fired; healthy runs stay near 0% of zero updates, the 90% line is far)
-- A parameter gets a real gradient but the optimizer step leaves it exactly as it was:
-- on at least `sustained` (90%) of the sampled steps on which its gradient was non-zero,
-- its update (w_t - w_{t-1}) is exactly zero, over at least min_samples such steps. The
-- usual causes are mechanical: it is not in any optimizer param group (the optimizer
-- was built from part of the model, or before a layer was added), or its group's
-- learning rate is 0. (The collector measures the update across optimizer.step(), so
-- only the optimizer's own step counts.) A few zero updates (AMP skipping an
-- overflowing step, a learning rate that starts at 0) do not count.
-- Gradients too small to move a float32 weight are left to `vanishing_gradients`: only
-- steps where ||grad|| >= min_grad_ratio * ||weight|| count. 6e-8 ~ 2^-24, float32's
-- relative rounding: below it a plain SGD step with any learning rate <= 1 changes
-- (roughly: norms stand for elements) no element of the weight, so an exact-zero update
-- is then explained by the gradient's size (the demo's 12-layer sigmoid MLP: 1e-11).
-- One finding per run: the subject is the shallowest stalled parameter (registration
-- order), the evidence lists all of them with the run's learning rate.
-- Pairing a step's rows of every parameter would join the stream with itself (tens of
-- millions of rows on a sweep): only parameters whose update was exactly zero on some
-- step can stall (when sustained > 0), so only their rows are paired, in one grouped
-- pass (the collector writes one row per rank, step, parameter and kind).
WITH zeroed AS (
    SELECT DISTINCT run_id, param FROM tensors WHERE kind = 'update' AND norm = 0
),
steps AS (  -- a step's grad, update and weight of such a parameter
    SELECT run_id, rank, step, param,
           any_value(norm) FILTER (WHERE kind = 'grad') AS grad_norm,
           any_value(norm) FILTER (WHERE kind = 'update') AS update_norm,
           any_value(seq) FILTER (WHERE kind = 'update') AS seq,
           any_value(norm) FILTER (WHERE kind = 'weight') AS weight_norm
    FROM tensors
    WHERE kind IN ('grad', 'update', 'weight')
      AND ($sustained <= 0 OR (run_id, param) IN (SELECT run_id, param FROM zeroed))
    GROUP BY run_id, rank, step, param
),
joined AS (
    SELECT run_id, param, step, grad_norm, update_norm, seq, weight_norm
    FROM steps
    WHERE param IS NOT NULL AND isfinite(grad_norm) AND grad_norm > 0 AND isfinite(update_norm)
      AND (weight_norm IS NULL OR NOT isfinite(weight_norm)
           OR grad_norm >= $min_grad_ratio * weight_norm)
),
per_param AS (
    SELECT run_id, param,
           count(*) AS samples,
           count(*) FILTER (WHERE update_norm = 0) AS zero_updates,
           median(grad_norm) AS grad_norm,
           median(weight_norm) AS weight_norm,
           min(step) AS from_step, max(step) AS to_step, min(seq) AS seq
    FROM joined
    GROUP BY run_id, param
),
watched AS (
    SELECT run_id, count(DISTINCT param) AS params FROM tensors WHERE kind = 'update' GROUP BY run_id
),
stalled AS (
    SELECT * FROM per_param
    WHERE samples >= $min_samples AND zero_updates >= $sustained * samples
),
lr AS (
    SELECT run_id, min(value) AS lr_min, max(value) AS lr_max FROM scalars
    WHERE name = 'lr' AND split = 'train' AND isfinite(value)
    GROUP BY run_id
)
SELECT s.run_id,
       arg_min(s.param, s.seq) AS subject,
       arg_min(s.from_step, s.seq) AS step,
       printf('%d of %d parameters receive gradients but never change: %s (median gradient norm %.3g, weight norm %.4g) had an update of exactly zero on %d of its %d sampled steps with a gradient%s',
              count(*), any_value(w.params), arg_min(s.param, s.seq), arg_min(s.grad_norm, s.seq),
              coalesce(arg_min(s.weight_norm, s.seq), 'nan'::DOUBLE),
              arg_min(s.zero_updates, s.seq), arg_min(s.samples, s.seq),
              CASE WHEN any_value(l.lr_max) = 0 THEN '; the learning rate is 0 throughout'
                   WHEN count(*) < any_value(w.params) THEN '; other parameters do move: it is likely missing from the optimizer, or its param group has a learning rate of 0'
                   ELSE '' END) AS message,
       json_object(
           'param', arg_min(s.param, s.seq),
           'stalled', to_json(list(json_object(
               'param', s.param, 'zero_updates', s.zero_updates, 'samples', s.samples,
               'median_grad_norm', s.grad_norm, 'median_weight_norm', s.weight_norm) ORDER BY s.seq)),
           'stalled_params', count(*), 'params', any_value(w.params),
           'lr_min', any_value(l.lr_min), 'lr_max', any_value(l.lr_max),
           'min_grad_ratio', $min_grad_ratio, 'sustained', $sustained
       )::VARCHAR AS evidence
FROM stalled s
JOIN watched w USING (run_id)
LEFT JOIN lr l USING (run_id)
GROUP BY s.run_id
