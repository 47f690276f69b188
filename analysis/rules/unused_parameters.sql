-- rule: unused_parameters
-- severity: warning
-- title: Parameters without gradients
-- requires: tensors:grad>=5, tensors:weight>=5
-- param: min_samples = 5
-- seed: part 2 §5 (check that the gradients update the weights), part 2 §2 (check the model structure), part 3 §2.1
-- suggestion: No gradient at all (.grad stays None): check that the forward pass uses this parameter (a layer built in __init__ but never called, a branch never taken) and that its output is not cut from the graph (.detach(), .data, torch.no_grad(), a NumPy round-trip); delete layers that are truly unused (they waste memory and make DistributedDataParallel fail unless find_unused_parameters=True), and freeze on purpose with requires_grad_(False). Gradients that are all zeros: the parameter is in the graph but something after it blocks the gradient: dead ReLUs downstream (see dead_relu), a layer after it initialised or masked to zero, a step function (round, sign, argmax) in between.
-- null: in a healthy run every trainable parameter the collector writes gets a non-zero gradient on some sampled step; a frozen parameter (requires_grad=False) is not written while frozen (collector.params), so freezing on purpose is never read as a fault
-- false_alarms: none expected on healthy runs: the finding is a fact about the graph, not a threshold; calibrated on tests/corpus (48 healthy runs, two with frozen backbones, one given to the optimizer: silent once the collector leaves frozen parameters out)
-- On every sampled step the collector writes a weight row for each watched trainable
-- parameter, and a grad row only for those whose .grad is set (p.grad is None: no row).
-- Two different faults with different fixes, one finding each:
--   - not in the graph: on at least min_samples sampled steps on which other parameters
--     did get a gradient, the parameter had no grad row at all (.grad stayed None: the
--     forward never used it, or its output was cut from the graph);
--   - blocked: it had grad rows, but every one of them is exactly 0 (it is in the graph,
--     and something downstream multiplies its gradient by zero: dead ReLUs after it, a
--     zero-initialised layer after it, a zero mask, a step function).
-- "Never" is the point: a parameter used on some steps only (a rarely routed expert, an
-- auxiliary head) is not flagged. A run in which no parameter gets a non-zero gradient is
-- not this rule's case (the loss itself is cut off).
-- Each finding's subject is the shallowest such parameter (registration order), the
-- evidence lists all of them and says which case it is (`cause`).
-- Pairing every weight row with its gradient row would join the stream with itself;
-- only parameters that may have no non-zero gradient are paired (`candidates`). The
-- others are counted without a join: a parameter with z steps of a non-zero gradient
-- and w steps of a weight, on a run that sampled u (rank, step)s, has a non-zero
-- gradient on a step with a weight when z + w > u (the collector writes one row per
-- rank, step, parameter and kind), so it is in per_param with nonzero > 0.
WITH grad_steps AS (
    SELECT DISTINCT run_id, rank, step FROM tensors WHERE kind = 'grad'
),
sampled AS (  -- the (rank, step)s of each run with any parameter row
    SELECT run_id, count(*) AS steps
    FROM (SELECT DISTINCT run_id, rank, step FROM tensors)
    GROUP BY run_id
),
counted AS (
    SELECT run_id, param,
           count(*) FILTER (WHERE kind = 'grad' AND norm <> 0) AS nonzero_rows,
           count(*) FILTER (WHERE kind = 'weight') AS weight_rows
    FROM tensors
    WHERE kind IN ('grad', 'weight') AND param IS NOT NULL
    GROUP BY run_id, param
),
candidates AS (
    SELECT c.run_id, c.param, c.nonzero_rows + c.weight_rows <= s.steps AS paired
    FROM counted c JOIN sampled s USING (run_id)
),
watched AS (
    SELECT w.run_id, w.rank, w.step, w.param, w.seq
    FROM tensors w JOIN grad_steps USING (run_id, rank, step)
    WHERE w.kind = 'weight'
      AND (w.param IS NULL
           OR (w.run_id, w.param) IN (SELECT run_id, param FROM candidates WHERE paired))
),
paired AS (
    SELECT w.run_id, w.param,
           count(*) AS samples,
           count(g.param) AS grad_rows,
           count(*) FILTER (WHERE g.param IS NOT NULL AND g.norm <> 0) AS nonzero,
           min(w.seq) AS seq, min(w.step) AS from_step, max(w.step) AS to_step
    FROM watched w
    LEFT JOIN tensors g
      ON g.run_id = w.run_id AND g.rank = w.rank AND g.step = w.step
     AND g.param = w.param AND g.kind = 'grad'
     AND (g.run_id, g.param) IN (SELECT run_id, param FROM candidates WHERE paired)
    GROUP BY w.run_id, w.param
),
per_param AS (  -- the paired parameters, and the others (nonzero > 0: never flagged)
    SELECT run_id, param, samples, grad_rows, nonzero, seq, from_step, to_step FROM paired
    UNION ALL
    SELECT run_id, param, NULL, NULL, 1, NULL, NULL, NULL FROM candidates WHERE NOT paired
),
judged AS (
    SELECT *,
           CASE WHEN grad_rows = 0 THEN 'not_in_graph' ELSE 'zero_gradient' END AS cause,
           count(*) OVER (PARTITION BY run_id) AS params,
           count(*) FILTER (WHERE nonzero > 0) OVER (PARTITION BY run_id) AS with_grads
    FROM per_param
)
SELECT run_id,
       arg_min(param, seq) AS subject,
       arg_min(from_step, seq) AS step,
       CASE cause
           WHEN 'not_in_graph' THEN printf('%d of %d parameters never received a gradient: %s got none (.grad stayed None: it is not in the graph) on all of its %d sampled steps, while %d other parameters did get gradients',
                                           count(*), any_value(params), arg_min(param, seq),
                                           arg_min(samples, seq), any_value(with_grads))
           ELSE printf('%d of %d parameters get gradients that are all zeros: %s is in the graph but its gradient was exactly 0 on all of its %d sampled steps with one (%d sampled in all), while %d other parameters got non-zero gradients; something after it blocks the gradient (dead ReLUs, a zero-initialised or masked layer)',
                       count(*), any_value(params), arg_min(param, seq), arg_min(grad_rows, seq),
                       arg_min(samples, seq), any_value(with_grads))
       END AS message,
       json_object(
           'cause', cause, 'param', arg_min(param, seq),
           'params_of_this_cause', to_json(list(json_object(
               'param', param, 'samples', samples, 'zero_grad_rows', grad_rows) ORDER BY seq)),
           'count', count(*), 'params', any_value(params),
           'params_with_gradients', any_value(with_grads), 'min_samples', $min_samples
       )::VARCHAR AS evidence
FROM judged
WHERE samples >= $min_samples AND nonzero = 0 AND with_grads > 0
GROUP BY run_id, cause
