-- rule: exploding_gradients
-- severity: error
-- title: Exploding gradients
-- requires: tensors:grad>=10
-- param: factor = 10.0
-- param: window = 50
-- param: min_history = 10
-- param: abs_bound = 1e4
-- param: min_hits = 2
-- seed: part 2 §3, part 3 §2.2 (very large gradients, loss jumps), part 6 §2
-- suggestion: Clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)), lower the learning rate, normalise inputs, and use He/Xavier initialisation or normalisation layers.
-- The global gradient norm (over all watched parameters) jumps above `factor` times its
-- own robust baseline: the larger of the rolling median of the previous `window` sampled
-- steps and the median of the first `min_history` ones (so a run whose gradients merely
-- shrink late in training does not count), or above abs_bound outright; at least
-- `min_hits` such steps. Infinite norms count, NaN norms are left to `nonfinite`.
WITH per_step AS (
    SELECT run_id, step, sqrt(sum(norm * norm)) AS grad_norm,
           arg_max(param, norm) AS top_param, max(norm) AS top_norm
    FROM tensors
    WHERE kind = 'grad' AND NOT isnan(norm)
    GROUP BY run_id, step
),
numbered AS (
    SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY step) AS i FROM per_step
),
initial AS (
    SELECT run_id, median(grad_norm) AS initial_norm FROM numbered
    WHERE i <= $min_history GROUP BY run_id
),
baselined AS (
    SELECT n.*, i.initial_norm,
           median(n.grad_norm) OVER (PARTITION BY n.run_id ORDER BY n.step
                                     ROWS BETWEEN $window PRECEDING AND 1 PRECEDING) AS rolling
    FROM numbered n JOIN initial i USING (run_id)
),
hits AS (
    SELECT *, grad_norm / greatest(rolling, initial_norm) AS ratio FROM baselined
    WHERE (i > $min_history AND grad_norm > $factor * greatest(rolling, initial_norm))
       OR grad_norm > $abs_bound
)
SELECT run_id,
       arg_min(top_param, step) AS subject,
       min(step) AS step,
       printf('global gradient norm jumped to %.3g at step %d, %.0fx its baseline %.3g (largest: %s, %.3g); %d steps above %gx baseline, peak %.3g',
              arg_min(grad_norm, step), min(step), arg_min(ratio, step),
              arg_min(greatest(rolling, initial_norm), step), arg_min(top_param, step),
              arg_min(top_norm, step), count(*), $factor, max(grad_norm)) AS message,
       json_object(
           'first_step', min(step), 'grad_norm', arg_min(grad_norm, step),
           'baseline', arg_min(greatest(rolling, initial_norm), step),
           'ratio', arg_min(ratio, step), 'peak_grad_norm', max(grad_norm),
           'steps_above', count(*), 'largest_param', arg_min(top_param, step),
           'factor', $factor, 'abs_bound', $abs_bound
       )::VARCHAR AS evidence
FROM hits
GROUP BY run_id
HAVING count(*) >= $min_hits
