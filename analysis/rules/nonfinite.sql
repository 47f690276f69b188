-- rule: nonfinite
-- severity: error
-- title: Non-finite values
-- requires: scalars | tensors
-- seed: part 3 §2 (exploding gradients), part 6 §2
-- suggestion: Find the first non-finite tensor named here: clip gradients, lower the learning rate, normalise inputs, and guard log/sqrt/division in the loss (e.g. add an epsilon); torch.autograd.detect_anomaly() pinpoints the operation.
-- The first NaN/Inf in the run: the earliest step at which a parameter's gradient,
-- weight or update, or a logged scalar, was non-finite. Within a step, tensors come
-- first (they explain the loss) in depth order (`seq`), gradients before weights.
WITH tensor_hits AS (
    SELECT run_id, step, seq, 0 AS source_order,
           kind || ' of ' || param AS subject,
           printf('%d of %d elements non-finite', nonfinite, numel) AS detail
    FROM tensors
    WHERE nonfinite > 0
),
scalar_hits AS (
    SELECT run_id, step, seq, 1 AS source_order,
           name || coalesce('/' || split, '') AS subject,
           CASE WHEN isnan(value) THEN 'NaN' WHEN value > 0 THEN '+Inf' ELSE '-Inf' END AS detail
    FROM scalars
    WHERE NOT isfinite(value)
),
hits AS (
    SELECT * FROM tensor_hits UNION ALL SELECT * FROM scalar_hits
),
firsts AS (
    SELECT run_id,
           arg_min(subject, (step, source_order, seq)) AS subject,
           arg_min(detail, (step, source_order, seq)) AS detail,
           min(step) AS step,
           count(DISTINCT subject) AS subjects,
           min(step) FILTER (WHERE source_order = 0) AS first_tensor_step,
           min(step) FILTER (WHERE source_order = 1) AS first_scalar_step
    FROM hits GROUP BY run_id
)
SELECT run_id, subject, step,
       printf('first non-finite value at step %d: %s (%s); %d tensors/metrics affected in total',
              step, subject, detail, subjects) AS message,
       json_object('first_step', step, 'first', subject, 'detail', detail,
                   'affected', subjects, 'first_tensor_step', first_tensor_step,
                   'first_scalar_step', first_scalar_step)::VARCHAR AS evidence
FROM firsts
