-- rule: vanishing_gradients
-- severity: warning
-- title: Vanishing gradients
-- requires: tensors:grad>=10
-- param: depth_ratio = 1e-3
-- param: abs_floor = 1e-7
-- param: min_samples = 5
-- seed: part 2 §3, part 3 §2.1 (gradients close to zero in some layers), part 6 §2
-- suggestion: Use ReLU/LeakyReLU instead of sigmoid/tanh, He (Kaiming) or Xavier initialisation, residual connections or normalisation layers; check these layers' weights actually change.
-- null: in a healthy net every layer's typical (median) gradient norm is within a few decades of the largest layer's: normalisation, residual paths, ReLU and He/Xavier initialisation keep the backward signal's scale (the tuning half of tests/corpus: every layer before the largest within a factor 25 of it, at least 0.043x)
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs: none fired; the closest layer sits 40x above the 1e-3 line)
-- A parameter's typical (median over sampled steps) gradient norm is tiny compared with
-- the layer that gets the largest gradients (below depth_ratio of it) or in absolute
-- terms (below abs_floor), and it sits *before* that layer: gradients fade on their way
-- back through the network. Depth is the parameter's position in the model's
-- registration order (`seq` within a step). Non-finite norms are left to other rules.
-- Gradients fade layer by layer, so a parameter is judged with its layer (the module
-- that owns it: its name up to the last dot): the layer's largest median gradient must
-- be tiny too. A bias feeding a normalisation layer (Conv2d -> BatchNorm2d with
-- bias=True) gets a gradient of ~0 by construction, since BatchNorm subtracts the batch
-- mean and so cancels any constant shift (Ioffe & Szegedy 2015, §3: "the effect of b
-- will be canceled by the subsequent mean subtraction"), while the layer's weight
-- gets a normal one: that is a redundant parameter, not a gradient vanishing with depth.
WITH g AS (
    SELECT run_id, param, step, norm, seq FROM tensors
    WHERE kind = 'grad' AND isfinite(norm)
),
all_grads AS (  -- depth comes from every gradient row, finite or not
    SELECT run_id, param, step, seq FROM tensors WHERE kind = 'grad'
),
first_step AS (
    SELECT run_id, min(step) AS step FROM all_grads GROUP BY run_id
),
depth AS (
    SELECT a.run_id, a.param, row_number() OVER (PARTITION BY a.run_id ORDER BY a.seq) AS depth
    FROM all_grads a JOIN first_step f ON f.run_id = a.run_id AND f.step = a.step
),
per_param AS (
    SELECT run_id, param, median(norm) AS grad_norm, count(*) AS samples, min(step) AS from_step
    FROM g GROUP BY run_id, param
),
weights AS (
    SELECT run_id, param, median(norm) AS weight_norm FROM tensors
    WHERE kind = 'weight' AND isfinite(norm) GROUP BY run_id, param
),
profile AS (
    SELECT p.*, d.depth, w.weight_norm,
           max(p.grad_norm) OVER (PARTITION BY p.run_id, regexp_replace(p.param, '\.[^.]*$', '')) AS layer_norm,
           max(p.grad_norm) OVER (PARTITION BY p.run_id) AS top_norm,
           arg_max(d.depth, p.grad_norm) OVER (PARTITION BY p.run_id) AS top_depth,
           arg_max(p.param, p.grad_norm) OVER (PARTITION BY p.run_id) AS top_param,
           count(*) OVER (PARTITION BY p.run_id) AS layers
    FROM per_param p JOIN depth d USING (run_id, param) LEFT JOIN weights w USING (run_id, param)
),
tiny AS (
    SELECT * FROM profile
    WHERE samples >= $min_samples
      AND depth < top_depth
      AND (layer_norm < $depth_ratio * top_norm OR layer_norm < $abs_floor)
)
SELECT run_id,
       arg_min(param, depth) AS subject,
       min(from_step) AS step,
       printf('%d of %d parameters get vanishing gradients; the shallowest, %s, has a median gradient norm of %.3g, %.1e of the largest (%s: %.3g)',
              count(*), any_value(layers), arg_min(param, depth), arg_min(grad_norm, depth),
              arg_min(grad_norm, depth) / any_value(top_norm), any_value(top_param), any_value(top_norm)) AS message,
       json_object(
           'param', arg_min(param, depth),
           'median_grad_norm', arg_min(grad_norm, depth),
           'median_weight_norm', arg_min(weight_norm, depth),
           'grad_to_weight', arg_min(grad_norm / nullif(weight_norm, 0), depth),
           'top_param', any_value(top_param), 'top_median_grad_norm', any_value(top_norm),
           'ratio_to_top', arg_min(grad_norm, depth) / any_value(top_norm),
           'vanishing_params', count(*), 'params', any_value(layers),
           'depth_ratio', $depth_ratio, 'abs_floor', $abs_floor
       )::VARCHAR AS evidence
FROM tiny
GROUP BY run_id
