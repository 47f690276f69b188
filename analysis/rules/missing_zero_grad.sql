-- rule: missing_zero_grad
-- severity: error
-- title: Gradients never reset
-- requires: system>=5
-- param: min_steps = 5
-- param: share = 0.9
-- seed: part 6 §6 (the training loop: optimizer.zero_grad(), loss.backward(), optimizer.step()), part 3 §2 (exploding gradients)
-- suggestion: Call optimizer.zero_grad() once per optimizer step, before the backward (or after optimizer.step()): gradients add up in .grad until reset, so without it every step applies the sum of all gradients so far. To accumulate gradients on purpose, reset after each optimizer.step() and divide the loss by the number of micro-batches.
-- null: the loop resets the gradients between optimizer steps, so when a step's first backward begins the optimizer's parameters hold no gradient (zero_grad() sets them to None) or zeros (set_to_none=False); gradient accumulation adds micro-batches inside one step and resets after it, which the check does not look at
-- false_alarms: none possible on a loop that resets: the carried gradient is measured, not estimated (exactly 0 or absent); 0 of the corpus's healthy runs (tests/corpus, both halves, including accumulation with zeroed and with None gradients, and zero_grad() between the forward and the backward)
-- `system.grad_carried_norm` is the global norm of the gradients the optimizer's
-- parameters already hold when the step's first backward begins (collector/gradients.py:
-- measured by a hook on the model's output, so zero_grad() between the forward and the
-- backward counts as the reset it is). A step carries gradients when that norm is > 0.
-- One finding per run (ranks judged together) when at least `share` (90%) of its steps
-- after the first, and at least `min_steps` of them, carried gradients in. The evidence
-- compares what a step carried in with its own gradient at the end of backward: without
-- a reset the carried sum dominates, and the gradient norm grows step over step.
WITH steps AS (
    SELECT run_id, rank, step, grad_carried_norm AS carried, grad_norm,
           row_number() OVER (PARTITION BY run_id, rank ORDER BY step) AS i
    FROM system
    WHERE grad_norm IS NOT NULL OR grad_carried_norm IS NOT NULL
),
judged AS (
    SELECT run_id,  -- the first step has nothing before it to carry: judged from the second
           count(*) FILTER (WHERE i > 1) AS steps,
           count(*) FILTER (WHERE i > 1 AND (carried > 0 OR NOT isfinite(carried))) AS carried_steps,
           min(step) FILTER (WHERE i > 1 AND (carried > 0 OR NOT isfinite(carried))) AS first_step,
           median(carried / nullif(grad_norm, 0))
               FILTER (WHERE carried > 0 AND isfinite(carried) AND isfinite(grad_norm)) AS carried_share,
           median(grad_norm) FILTER (WHERE i <= 5 AND isfinite(grad_norm)) AS first_norm,
           max(grad_norm) FILTER (WHERE isfinite(grad_norm)) AS max_norm
    FROM steps
    GROUP BY run_id
)
SELECT run_id,
       'optimizer.zero_grad' AS subject,
       first_step AS step,
       printf('gradients are never reset: %d of %d steps began their backward with the previous steps'' gradients still in .grad (from step %d), so each step applied the sum of all gradients so far%s%s',
              carried_steps, steps, first_step,
              CASE WHEN carried_share IS NOT NULL
                   THEN printf('; what a step carried in was %.0f%% of its gradient norm at the end of backward (median)', 100 * carried_share)
                   ELSE '' END,
              CASE WHEN first_norm > 0 AND max_norm IS NOT NULL
                   THEN printf('; the gradient norm grew from %.3g to %.3g', first_norm, max_norm)
                   ELSE '' END) AS message,
       json_object(
           'carried_steps', carried_steps, 'judged_steps', steps,
           'carried_share_median', carried_share,
           'first_grad_norm', first_norm, 'max_grad_norm', max_norm,
           'min_steps', $min_steps, 'share', $share
       )::VARCHAR AS evidence
FROM judged
WHERE carried_steps >= $min_steps AND carried_steps >= $share * steps
