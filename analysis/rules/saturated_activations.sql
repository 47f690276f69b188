-- rule: saturated_activations
-- severity: warning
-- title: Saturated activations
-- requires: activations>=3
-- param: threshold = 0.5
-- param: sustained = 0.8
-- param: tail_frac = 0.5
-- param: min_samples = 3
-- param: skip_output = True
-- seed: part 3 §2.1 (sigmoid/tanh derivatives near zero make gradients vanish), part 3 §2.2 (Xavier initialisation for sigmoid/tanh), part 6 §2
-- suggestion: Saturated sigmoid/tanh units pass almost no gradient: replace them with ReLU/LeakyReLU where possible, use Xavier initialisation (nn.init.xavier_uniform_) for sigmoid/tanh layers, normalise the inputs (or add normalisation layers before the activation), and lower the learning rate if the pre-activations grew during training.
-- null: a healthy bounded activation (sigmoid, tanh) keeps most of its outputs away from its bounds through the second half of training
-- false_alarms: 0 of 48 healthy runs of tests/corpus on either half (tanh and GELU nets among them); recall on its 2 labelled runs
-- `saturated_frac` is the share of a bounded activation's outputs within 1e-3 (of the
-- half-range) of a saturating bound: Sigmoid/Hardsigmoid near 0 or 1, Tanh/Softsign/
-- Hardtanh near their bounds, ReLU6 near 6; it is null for unbounded modules. Fires
-- when more than `threshold` of a module's outputs are saturated in at least
-- `sustained` of its last sampled steps (the last `tail_frac` of them, at least
-- `min_samples`), so a transient spike is not flagged. The model's output module (the
-- last leaf in forward order) is skipped while skip_output is true: a sigmoid head that
-- grows confident, or an autoencoder whose target pixels are 0 or 1, saturates by design.
-- With several ranks a step counts its smallest saturated_frac.
WITH marked AS (
    SELECT run_id, module, step, module_type, saturated_frac,
           seq = max(seq) OVER (PARTITION BY run_id, rank, step) AS is_last
    FROM activations
),
outputs AS (
    SELECT run_id, module, true AS is_output
    FROM marked GROUP BY run_id, module HAVING bool_or(is_last)
),
per_step AS (
    SELECT m.run_id, m.module, m.step,
           any_value(m.module_type) AS module_type, min(m.saturated_frac) AS saturated_frac
    FROM marked m LEFT JOIN outputs o USING (run_id, module)
    WHERE isfinite(m.saturated_frac) AND NOT ($skip_output AND coalesce(o.is_output, false))
    GROUP BY m.run_id, m.module, m.step
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id, module ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id, module) AS n
    FROM per_step
),
tail AS (  -- the sustained-tail window (analysis/macros/tails.sql)
    SELECT * FROM numbered
    WHERE in_tail(i, n, $tail_frac, $min_samples)
),
sustained AS (
    SELECT run_id, module,
           any_value(module_type) AS module_type,
           count(*) AS samples,
           count(*) FILTER (WHERE saturated_frac > $threshold) AS above,
           median(saturated_frac) AS median_saturated_frac,
           arg_max(saturated_frac, step) AS last_saturated_frac,
           min(step) AS from_step,
           max(step) AS to_step
    FROM tail
    GROUP BY run_id, module
    HAVING count(*) FILTER (WHERE saturated_frac > $threshold) >= $sustained * count(*)
),
history AS (
    SELECT run_id, module,
           min(step) FILTER (WHERE saturated_frac > $threshold) AS first_step_above,
           median(saturated_frac) FILTER (WHERE i <= $min_samples) AS initial_saturated_frac
    FROM numbered
    GROUP BY run_id, module
)
SELECT s.run_id,
       s.module AS subject,
       h.first_step_above AS step,
       printf('%.0f%% of the outputs of %s (%s) are saturated at a bound of the activation in %d of its last %d sampled steps (median %.2f, last %.2f, threshold %.2f, %.2f in its first samples); first above the threshold at step %d',
              100 * s.median_saturated_frac, s.module, s.module_type, s.above, s.samples,
              s.median_saturated_frac, s.last_saturated_frac, $threshold,
              h.initial_saturated_frac, h.first_step_above) AS message,
       json_object(
           'module', s.module, 'module_type', s.module_type,
           'median_saturated_frac', s.median_saturated_frac,
           'last_saturated_frac', s.last_saturated_frac,
           'initial_saturated_frac', h.initial_saturated_frac,
           'samples', s.samples, 'samples_above', s.above,
           'from_step', s.from_step, 'to_step', s.to_step,
           'first_step_above', h.first_step_above,
           'threshold', $threshold, 'sustained', $sustained
       )::VARCHAR AS evidence
FROM sustained s
JOIN history h USING (run_id, module)
