-- rule: unused_parameters
-- severity: warning
-- title: Parameters without gradients
-- requires: tensors:grad>=5, tensors:weight>=5
-- param: min_samples = 5
-- seed: part 2 §5 (check that the gradients update the weights), part 2 §2 (check the model structure), part 3 §2.1
-- suggestion: Check that the forward pass uses this parameter (a layer built in __init__ but never called, a branch never taken) and that its output is not cut from the graph (.detach(), .data, torch.no_grad(), a NumPy round-trip); delete layers that are truly unused: they waste memory and make DistributedDataParallel fail unless find_unused_parameters=True.
-- On every sampled step the collector writes a weight row for each watched parameter,
-- and a grad row only for those whose .grad is set (p.grad is None: no row). A
-- parameter never received a gradient when, on at least min_samples sampled steps on
-- which other parameters did get one, it had no grad row or one with a norm of exactly
-- 0 (what a zero_grad(set_to_none=False) leaves on a parameter outside the graph), and
-- never a non-zero one. "Never" is the point: a parameter used on some steps only (a
-- rarely routed expert, an auxiliary head) is not flagged. A run in which no parameter
-- gets a non-zero gradient is not this rule's case (the loss itself is cut off).
-- One finding per run: the subject is the shallowest such parameter (registration
-- order), the evidence lists all of them.
WITH grad_steps AS (
    SELECT DISTINCT run_id, rank, step FROM tensors WHERE kind = 'grad'
),
watched AS (
    SELECT w.run_id, w.rank, w.step, w.param, w.seq
    FROM tensors w JOIN grad_steps USING (run_id, rank, step)
    WHERE w.kind = 'weight'
),
per_param AS (
    SELECT w.run_id, w.param,
           count(*) AS samples,
           count(g.param) AS grad_rows,
           count(*) FILTER (WHERE g.param IS NOT NULL AND g.norm <> 0) AS nonzero,
           min(w.seq) AS seq, min(w.step) AS from_step, max(w.step) AS to_step
    FROM watched w
    LEFT JOIN tensors g
      ON g.run_id = w.run_id AND g.rank = w.rank AND g.step = w.step
     AND g.param = w.param AND g.kind = 'grad'
    GROUP BY w.run_id, w.param
),
judged AS (
    SELECT *,
           count(*) OVER (PARTITION BY run_id) AS params,
           count(*) FILTER (WHERE nonzero > 0) OVER (PARTITION BY run_id) AS with_grads
    FROM per_param
)
SELECT run_id,
       arg_min(param, seq) AS subject,
       arg_min(from_step, seq) AS step,
       printf('%d of %d parameters never received a gradient: %s got %s on all of its %d sampled steps, while %d other parameters did get gradients',
              count(*), any_value(params), arg_min(param, seq),
              CASE WHEN arg_min(grad_rows, seq) = 0 THEN 'none (.grad stayed None)'
                   ELSE 'only all-zero ones' END,
              arg_min(samples, seq), any_value(with_grads)) AS message,
       json_object(
           'param', arg_min(param, seq),
           'unused', to_json(list(json_object(
               'param', param, 'samples', samples, 'zero_grad_rows', grad_rows) ORDER BY seq)),
           'unused_params', count(*), 'params', any_value(params),
           'params_with_gradients', any_value(with_grads), 'min_samples', $min_samples
       )::VARCHAR AS evidence
FROM judged
WHERE samples >= $min_samples AND nonzero = 0 AND with_grads > 0
GROUP BY run_id
