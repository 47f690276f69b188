-- rule: vanishing_gradients
-- severity: warning
-- title: Vanishing gradients
-- requires: tensors:grad>=10
-- param: depth_ratio = 1e-3
-- param: abs_floor = 1e-7
-- param: min_samples = 5
-- seed: part 2 §3, part 3 §2.1 (gradients close to zero in some layers), part 6 §2
-- suggestion: With sigmoid/tanh between the layers, use ReLU or LeakyReLU instead; with ReLU-family activations already, add normalisation layers (BatchNorm, LayerNorm) or residual connections; in both cases use He (Kaiming) or Xavier initialisation, and check these layers' weights actually change.
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
-- The suggestion depends on the activations the net uses (the `modules` and `activations`
-- views' module types; a module whose output feeds a functional relu records dead_frac):
-- with ReLU-family ones already, no "use ReLU" (normalisation, residual connections,
-- initialisation, a lower learning rate after a blow-up); with only sigmoid/tanh ones,
-- ReLU; with no activation module at all (functional activations leave none), advice for
-- either case. A run that recorded neither view gets the header's suggestion.
WITH norms AS (  -- per parameter, one pass over its grad and weight rows
    SELECT run_id, param,
           median(norm) FILTER (WHERE kind = 'grad' AND isfinite(norm)) AS grad_norm,
           count(*) FILTER (WHERE kind = 'grad' AND isfinite(norm)) AS samples,
           min(step) FILTER (WHERE kind = 'grad' AND isfinite(norm)) AS from_step,
           -- depth comes from every gradient row, finite or not
           min(step) FILTER (WHERE kind = 'grad') AS first_grad_step,
           median(norm) FILTER (WHERE kind = 'weight' AND isfinite(norm)) AS weight_norm
    FROM tensors
    WHERE kind IN ('grad', 'weight')
    GROUP BY run_id, param
),
first_step AS (
    SELECT run_id, min(first_grad_step) AS step FROM norms GROUP BY run_id
),
depth AS (  -- the gradient rows of the run's first step with one, in registration order
    SELECT a.run_id, a.param, row_number() OVER (PARTITION BY a.run_id ORDER BY a.seq) AS depth
    FROM tensors a JOIN first_step f ON f.run_id = a.run_id AND f.step = a.step
    WHERE a.kind = 'grad'
),
per_param AS (  -- parameters with a finite gradient
    SELECT run_id, param, grad_norm, samples, from_step FROM norms WHERE samples > 0
),
weights AS (
    SELECT run_id, param, weight_norm FROM norms WHERE weight_norm IS NOT NULL
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
types AS (  -- the module types the run recorded, and whether a functional relu was seen
    SELECT DISTINCT run_id, module_type, false AS functional_relu FROM modules
    UNION
    SELECT DISTINCT run_id, module_type,
           dead_frac IS NOT NULL AND module_type NOT IN ('ReLU', 'ReLU6') FROM activations
),
kinds AS (
    SELECT run_id,
           coalesce(list_sort(list_distinct(list(module_type) FILTER (WHERE module_type IN (
               'ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'RReLU', 'ELU', 'SELU', 'CELU', 'GELU',
               'SiLU', 'Mish', 'Hardswish', 'Softplus')))), []) AS relu_like,
           bool_or(functional_relu) AS functional_relu,
           coalesce(list_sort(list_distinct(list(module_type) FILTER (WHERE module_type IN (
               'Sigmoid', 'Tanh', 'Hardtanh', 'Hardsigmoid', 'Softsign', 'LogSigmoid')))), [])
               AS squashing
    FROM types GROUP BY run_id
),
advice AS (
    SELECT run_id,
           CASE WHEN len(relu_like) > 0 OR functional_relu
                THEN printf('The net already uses ReLU-family activations (%s), so switching to ReLU will not help: add normalisation layers (BatchNorm, LayerNorm) or residual connections, use He (Kaiming) initialisation, look for dead units (dead_relu), and lower the learning rate if the loss blew up before the gradients faded%s; check these layers'' weights actually change.',
                            array_to_string(list_concat(relu_like,
                                CASE WHEN functional_relu THEN ['a functional relu'] ELSE [] END), ', '),
                            CASE WHEN len(squashing) > 0
                                 THEN printf('; it also has %s, which saturate: where one sits between hidden layers rather than at the output, replace it too',
                                             array_to_string(squashing, ', '))
                                 ELSE '' END)
                WHEN len(squashing) > 0
                THEN printf('The net''s activations are %s (no ReLU-family module), which pass back little gradient and almost none once saturated: between hidden layers, use ReLU or LeakyReLU instead with He (Kaiming) initialisation, or add normalisation layers or residual connections; check these layers'' weights actually change.',
                            array_to_string(squashing, ', '))
                ELSE 'No activation module was recorded (a functional activation such as F.relu or torch.sigmoid leaves none), so which activations the net uses is not known: with sigmoid/tanh between the layers, use ReLU or LeakyReLU instead; with ReLU-family ones already, add normalisation layers or residual connections; in both cases use He (Kaiming) or Xavier initialisation, and check these layers'' weights actually change.'
           END AS suggestion,
           list_concat(relu_like, squashing) AS activation_types, functional_relu
    FROM kinds
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
           'depth_ratio', $depth_ratio, 'abs_floor', $abs_floor,
           'activation_types', any_value(a.activation_types),
           'functional_relu', any_value(a.functional_relu)
       )::VARCHAR AS evidence,
       any_value(a.suggestion) AS suggestion
FROM tiny
LEFT JOIN advice a USING (run_id)
GROUP BY run_id
