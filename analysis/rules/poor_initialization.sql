-- rule: poor_initialization
-- severity: warning
-- title: Poor initialisation
-- requires: activations>=3 | scalars:$metric/train>=10
-- param: first_samples = 1
-- param: layer_types = '^(Linear|Bilinear|Conv[123]d|ConvTranspose[123]d)$'
-- param: min_layers = 3
-- param: spread = 100.0
-- param: min_r2 = 0.9
-- param: metric = 'loss'
-- param: loss_points = 10
-- param: loss_tolerance = 1e-3
-- seed: part 3 §2.1 and §2.2 (Xavier / He initialisation keep the initial weights at a suitable size), part 6 §2, part 6 §5 (check that the gradients update)
-- suggestion: Initialise the weights for the activation that follows them: He (Kaiming) for ReLU (nn.init.kaiming_normal_(m.weight, nonlinearity='relu')), Xavier for sigmoid/tanh (nn.init.xavier_uniform_), zero biases; add normalisation layers (BatchNorm/LayerNorm) or residual connections in deep stacks, and check that the inputs are normalised.
-- null: at initialisation a healthy net keeps the output scale of its weight layers within a small factor from the first to the last (He/Xavier initialisation, normalisation layers), and its first training losses move (the tuning half of tests/corpus: the last layer's std within 0.5x..3.4x of the first's)
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs: none fired; the largest spread, 3.4x, is 30x under the 100x line)
-- Two forms, one finding each.
-- Activations: over the first `first_samples` sampled steps (1: the first, whose forward
-- ran on the initial weights: every later sample has been through optimizer updates, and
-- a learning rate that blows the weights up within a few steps, e.g. SGD at lr 1.0 going
-- NaN at step 7, would read as a poor initialisation), the output std of the
-- weight layers (module_type matching `layer_types`; activation functions and pooling
-- only rescale by a constant, so they would blur the trend) shrinks or grows
-- geometrically with depth: the deepest layer's median std is below 1/`spread` or above
-- `spread` times the first layer's, and ln(std) is close to a straight line in depth
-- (r^2 >= min_r2, at least `min_layers` layers). Depth is forward order (`seq` within a
-- step, a module called twice counts at its first call); zero and non-finite stds are
-- left out (a zero-initialised head is a choice, NaN is `nonfinite`'s). A single layer
-- that is off (e.g. a small-initialised last layer) is not a trend and is not flagged.
-- The subject is the layer whose std is furthest (in ratio) from the first layer's.
-- Loss: the first `loss_points` finite training losses stay within `loss_tolerance` of
-- their median (relative): the network outputs (nearly) a constant, e.g. ln(classes)
-- for a classifier whose logits are all equal. Skipped while the learning rate is zero
-- or warming up (it more than doubles within those points), when nothing can move yet.
WITH sampled_steps AS (
    SELECT run_id, step, row_number() OVER (PARTITION BY run_id ORDER BY step) AS k
    FROM (SELECT DISTINCT run_id, step FROM activations)
),
layer_rows AS (
    SELECT a.run_id, a.rank, a.step, a.module,
           any_value(a.module_type) AS module_type,
           arg_min(a.std, a.seq) AS std,
           min(a.seq) AS seq
    FROM activations a
    JOIN sampled_steps s ON s.run_id = a.run_id AND s.step = a.step AND s.k <= $first_samples
    WHERE regexp_full_match(a.module_type, $layer_types)
    GROUP BY a.run_id, a.rank, a.step, a.module
),
positioned AS (
    SELECT *, row_number() OVER (PARTITION BY run_id, rank, step ORDER BY seq) AS position
    FROM layer_rows
),
per_layer AS (
    SELECT run_id, module,
           any_value(module_type) AS module_type,
           median(std) AS std,
           min(position) AS depth,
           min(step) AS from_step,
           max(step) AS to_step
    FROM positioned
    WHERE isfinite(std) AND std > 0
    GROUP BY run_id, module
),
relative AS (
    SELECT *,
           std / first_value(std) OVER (PARTITION BY run_id ORDER BY depth, module) AS ratio
    FROM per_layer
),
profile AS (
    SELECT run_id,
           count(*) AS layers,
           arg_min(module, depth) AS first_module,
           arg_min(std, depth) AS first_std,
           arg_max(module, depth) AS last_module,
           arg_max(std, depth) AS last_std,
           arg_max(ratio, depth) AS last_ratio,
           arg_max(module, abs(ln(ratio))) AS worst_module,
           arg_max(module_type, abs(ln(ratio))) AS worst_type,
           arg_max(std, abs(ln(ratio))) AS worst_std,
           arg_max(ratio, abs(ln(ratio))) AS worst_ratio,
           regr_r2(ln(std), depth) AS r2,
           regr_slope(ln(std), depth) AS slope,
           min(from_step) AS from_step,
           max(to_step) AS to_step
    FROM relative
    GROUP BY run_id
),
train AS (  -- one point per step: the mean of its rows (ranks, micro-batches)
    SELECT run_id, step, avg(value) AS value,
           row_number() OVER (PARTITION BY run_id ORDER BY step) AS i
    FROM scalars
    WHERE name = $metric AND split = 'train' AND isfinite(value)
    GROUP BY run_id, step
),
flat AS (
    SELECT run_id,
           min(value) AS lo, max(value) AS hi, median(value) AS level,
           count(*) AS points, min(step) AS from_step, max(step) AS to_step
    FROM train
    WHERE i <= $loss_points
    GROUP BY run_id
    HAVING count(*) >= $loss_points
       AND max(value) - min(value) <= $loss_tolerance * abs(median(value))
),
lr AS (
    SELECT f.run_id, min(s.value) AS lr_min, max(s.value) AS lr_max
    FROM flat f
    JOIN scalars s ON s.run_id = f.run_id AND s.step BETWEEN f.from_step AND f.to_step
    WHERE s.name = 'lr' AND s.split = 'train' AND isfinite(s.value)
    GROUP BY f.run_id
)
SELECT run_id,
       worst_module AS subject,
       from_step AS step,
       printf('at the first sampled steps (%d-%d) the output std of the weight layers %s geometrically with depth: %.3g at %s, %.3g at %s (%.1ex over %d layers, r^2 %.2f); furthest off: %s (%s), std %.3g, %.1ex the first layer''s',
              from_step, to_step, CASE WHEN slope < 0 THEN 'shrinks' ELSE 'grows' END,
              first_std, first_module, last_std, last_module, last_ratio, layers, r2,
              worst_module, worst_type, worst_std, worst_ratio) AS message,
       json_object(
           'form', 'activation_std', 'module', worst_module, 'module_type', worst_type,
           'std', worst_std, 'ratio_to_first', worst_ratio,
           'first_module', first_module, 'first_std', first_std,
           'last_module', last_module, 'last_std', last_std, 'last_to_first', last_ratio,
           'layers', layers, 'r2', r2, 'std_factor_per_layer', exp(slope),
           'from_step', from_step, 'to_step', to_step,
           'spread', $spread, 'min_r2', $min_r2
       )::VARCHAR AS evidence
FROM profile
WHERE layers >= $min_layers
  AND r2 >= $min_r2
  AND ((slope < 0 AND last_ratio < 1 / $spread) OR (slope > 0 AND last_ratio > $spread))
UNION ALL
SELECT f.run_id,
       $metric || '/train',
       f.to_step,
       printf('training %s did not move over its first %d points (steps %d-%d): it stayed within %.3g of %.4g (relative spread %.1e, tolerance %.0e); the network likely outputs a constant',
              $metric, f.points, f.from_step, f.to_step, f.hi - f.lo, f.level,
              (f.hi - f.lo) / nullif(abs(f.level), 0), $loss_tolerance),
       json_object(
           'form', 'flat_loss', 'points', f.points, 'from_step', f.from_step,
           'to_step', f.to_step, 'min', f.lo, 'max', f.hi, 'median', f.level,
           'relative_spread', (f.hi - f.lo) / nullif(abs(f.level), 0),
           'lr_min', l.lr_min, 'lr_max', l.lr_max, 'loss_tolerance', $loss_tolerance
       )::VARCHAR
FROM flat f
LEFT JOIN lr l USING (run_id)
-- no learning-rate scalar, or a positive one that does not ramp up (a warm-up)
WHERE l.run_id IS NULL OR (l.lr_max > 0 AND l.lr_max <= 2 * l.lr_min)
