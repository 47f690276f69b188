-- rule: dead_relu
-- severity: warning
-- title: Dead ReLU units
-- when: ended
-- requires: activations:dead_frac>=$min_samples
-- param: threshold = 0.5
-- param: nearly_all = 0.8
-- param: sustained = 0.8
-- param: tail_frac = 0.5
-- param: min_samples = 3
-- seed: part 4 §2.4 and §5 (activations reveal dead neurons), part 3 §2.1 (LeakyReLU, He initialisation), part 6 §4
-- suggestion: Use LeakyReLU (nn.LeakyReLU(0.01)) so that negative inputs keep a small gradient, He (Kaiming) initialisation (nn.init.kaiming_normal_, zero biases), a lower learning rate, and check the bias and the input normalisation of the layer feeding this ReLU.
-- null: in a healthy ReLU net a layer's units each fire on some examples; a batch leaves a share of them silent that depends on the batch size and the layer's sparsity, and training can kill part of a layer for good (the tuning half of tests/corpus: up to 47% of a hidden layer silent on a batch at the end, 53% at the start, at batch 16; a one-cycle BatchNorm CNN at 90%+ validation accuracy ends with 55% of a hidden layer dead) without costing the run its results
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs: none fired; the closest, a batch-16 CNN, sits at 47% at the end, under the 50% line)
-- A unit is dead when it is <= 0 for every example of the sampled batch (`dead_frac`,
-- recorded for ReLU and ReLU6 only: LeakyReLU, PReLU, ELU and GELU pass negative inputs
-- through, so their units are never exactly dead and their dead_frac is null).
-- Sustained: more than `threshold` of a module's units are dead in at least `sustained`
-- of its last sampled steps (the last `tail_frac` of them, at least `min_samples`); a
-- module that dies briefly and recovers, or only dies at the very end, is not flagged.
-- Dead units cost a run when the layer has (almost) nothing left or when they never had
-- a chance, so a sustained majority is flagged only when
--   - nearly the whole layer is dead: the tail's median dead share is at least
--     `nearly_all` (a learning rate that kills the layer in a few steps, a run whose
--     gradients pile up), or
--   - the units were dead from the start: more than `threshold` already in the first
--     `min_samples` sampled steps (the initial weights and biases: a large negative bias,
--     a bad initialisation), so they never trained.
-- A layer whose units died during training down to a majority but not to nearly all is
-- left alone: a healthy net at a high learning rate (one-cycle) prunes part of a layer
-- and still learns, and a batch's share of silent units is noisy (small batches).
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
tail AS (  -- the sustained-tail window (analysis/macros/tails.sql)
    SELECT * FROM numbered
    WHERE in_tail(i, n, $tail_frac, $min_samples)
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
           median(dead_frac) FILTER (WHERE i <= $min_samples) AS initial_dead_frac,
           max(step) FILTER (WHERE i <= $min_samples) AS initial_to_step,
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
       printf('%.0f%% of the units of %s (%s) are dead (never positive on any example of the batch) in %d of its last %d sampled steps (median %.2f, last %.2f, threshold %.2f); first above the threshold at step %d; %s',
              100 * s.median_dead_frac, s.module,
              s.module_type || CASE WHEN f.feeds IS NOT NULL THEN ', read by a functional ReLU'
                                    ELSE '' END,
              s.above, s.samples,
              s.median_dead_frac, s.last_dead_frac, $threshold, h.first_step_above,
              CASE WHEN s.median_dead_frac >= $nearly_all
                   THEN printf('nearly the whole layer is dead (it was at %.0f%% over its first %d sampled steps, to step %d)',
                               100 * h.initial_dead_frac, $min_samples, h.initial_to_step)
                   ELSE printf('dead from the start (%.0f%% over its first %d sampled steps, to step %d): these units never trained (the initial weights or biases)',
                               100 * h.initial_dead_frac, $min_samples, h.initial_to_step)
              END) AS message,
       json_object(
           'module', s.module, 'module_type', s.module_type,
           'functional_relu', f.feeds IS NOT NULL,
           'median_dead_frac', s.median_dead_frac, 'last_dead_frac', s.last_dead_frac,
           'samples', s.samples, 'samples_above', s.above,
           'from_step', s.from_step, 'to_step', s.to_step,
           'first_step_above', h.first_step_above, 'dead_since_step', d.dead_since,
           'initial_dead_frac', h.initial_dead_frac,
           'initial_to_step', h.initial_to_step,
           'reason', CASE WHEN s.median_dead_frac >= $nearly_all THEN 'nearly_all_dead'
                          ELSE 'dead_from_start' END,
           'threshold', $threshold, 'nearly_all', $nearly_all, 'sustained', $sustained
       )::VARCHAR AS evidence
FROM sustained s
JOIN history h USING (run_id, module)
LEFT JOIN since d USING (run_id, module)
LEFT JOIN (  -- a Linear/Conv whose output F.relu reads (modules.feeds, collector/modules.py)
    SELECT run_id, module, any_value(feeds) AS feeds
    FROM modules WHERE feeds IS NOT NULL GROUP BY run_id, module
) f USING (run_id, module)
WHERE s.median_dead_frac >= $nearly_all OR h.initial_dead_frac > $threshold
