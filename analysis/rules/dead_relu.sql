-- rule: dead_relu
-- severity: warning
-- title: Dead ReLU units
-- requires: activations>=3
-- param: threshold = 0.5
-- param: sustained = 0.8
-- param: tail_frac = 0.5
-- param: min_samples = 3
-- seed: part 4 §2.4 and §5 (activations reveal dead neurons), part 3 §2.1 (LeakyReLU, He initialisation), part 6 §4
-- suggestion: Use LeakyReLU (nn.LeakyReLU(0.01)) so that negative inputs keep a small gradient, He (Kaiming) initialisation (nn.init.kaiming_normal_, zero biases), a lower learning rate, and check the bias and the input normalisation of the layer feeding this ReLU.
-- A unit is dead when it is <= 0 for every example of the sampled batch (`dead_frac`,
-- recorded for ReLU and ReLU6 only: LeakyReLU, PReLU, ELU and GELU pass negative inputs
-- through, so their units are never exactly dead and their dead_frac is null). Fires
-- when more than `threshold` of a module's units are dead in at least `sustained` of
-- its last sampled steps: the last `tail_frac` of them, at least `min_samples`. A
-- module that dies briefly and recovers, or only dies at the very end, is not flagged.
-- With several ranks a step counts its smallest dead_frac (a unit dead on the whole
-- global batch is dead on every rank).
WITH per_step AS (
    SELECT run_id, module, step,
           any_value(module_type) AS module_type, min(dead_frac) AS dead_frac
    FROM activations
    WHERE isfinite(dead_frac)
    GROUP BY run_id, module, step
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY run_id, module ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id, module) AS n
    FROM per_step
),
tail AS (
    SELECT * FROM numbered
    WHERE n >= $min_samples AND i > n - greatest(ceil(n * $tail_frac), $min_samples)
),
sustained AS (
    SELECT run_id, module,
           any_value(module_type) AS module_type,
           count(*) AS samples,
           count(*) FILTER (WHERE dead_frac > $threshold) AS above,
           median(dead_frac) AS median_dead_frac,
           arg_max(dead_frac, step) AS last_dead_frac,
           min(step) AS from_step,
           max(step) AS to_step
    FROM tail
    GROUP BY run_id, module
    HAVING count(*) FILTER (WHERE dead_frac > $threshold) >= $sustained * count(*)
),
history AS (  -- over the whole run: when it first crossed, and since when it stayed above
    SELECT run_id, module,
           min(step) FILTER (WHERE dead_frac > $threshold) AS first_step_above,
           max(step) FILTER (WHERE dead_frac <= $threshold) AS last_step_below
    FROM numbered
    GROUP BY run_id, module
),
since AS (
    SELECT n.run_id, n.module, min(n.step) AS dead_since
    FROM numbered n JOIN history h USING (run_id, module)
    WHERE n.dead_frac > $threshold AND n.step > coalesce(h.last_step_below, -1)
    GROUP BY n.run_id, n.module
)
SELECT s.run_id,
       s.module AS subject,
       h.first_step_above AS step,
       printf('%.0f%% of the units of %s (%s) are dead (never positive on any example of the batch) in %d of its last %d sampled steps (median %.2f, last %.2f, threshold %.2f); first above the threshold at step %d',
              100 * s.median_dead_frac, s.module, s.module_type, s.above, s.samples,
              s.median_dead_frac, s.last_dead_frac, $threshold, h.first_step_above) AS message,
       json_object(
           'module', s.module, 'module_type', s.module_type,
           'median_dead_frac', s.median_dead_frac, 'last_dead_frac', s.last_dead_frac,
           'samples', s.samples, 'samples_above', s.above,
           'from_step', s.from_step, 'to_step', s.to_step,
           'first_step_above', h.first_step_above, 'dead_since_step', d.dead_since,
           'threshold', $threshold, 'sustained', $sustained
       )::VARCHAR AS evidence
FROM sustained s
JOIN history h USING (run_id, module)
LEFT JOIN since d USING (run_id, module)
