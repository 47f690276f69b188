-- rule: nonfinite
-- severity: error
-- title: Non-finite values
-- requires: scalars | tensors | activations
-- seed: part 3 §2 (exploding gradients), part 6 §2
-- suggestion: Start at the module or tensor named here (the first to hold NaN/Inf): clip gradients, lower the learning rate, normalise inputs, and guard log/sqrt/division in the model and the loss (e.g. add an epsilon); torch.autograd.detect_anomaly() pinpoints the operation.
-- null: a healthy run's losses, gradients, weights, updates and activations are all finite
-- false_alarms: none: a NaN or Inf is never healthy; 0 of 48 healthy runs of tests/corpus on either half, every labelled NaN run found with its origin
-- The first NaN/Inf in the run: the earliest step at which a module's forward output
-- (the collector's per-step `nonfinite_origin` event, or a sampled `activations` row),
-- a parameter's gradient, weight or update, or a logged scalar was non-finite. Within a
-- step the forward pass comes first (it ran first and explains everything after it):
-- the origin event, then activation rows in forward order; then tensors in depth order
-- (`seq`), gradients before weights; then scalars such as the loss. The evidence names
-- the forward origin even when an earlier tensor or scalar is the first hit.
-- `events` is not a requirement: every run has events (run_started), and the origin
-- event is written together with the step's scalars.
WITH origins AS (  -- payload keys: module, module_type, numel, and sum (or older: min/max)
    SELECT run_id, step, seq,
           coalesce(json_extract_string(payload, '$.module'), '(unknown module)') AS module,
           json_extract_string(payload, '$.module_type') AS module_type,
           json_extract_string(payload, '$.numel') AS numel,
           json_extract_string(payload, '$.nonfinite') AS nonfinite,
           json_extract_string(payload, '$.sum') AS total,
           coalesce(json_extract_string(payload, '$.own_code') = 'true', false) AS own_code,
           json_extract_string(payload, '$.min') AS lo,
           json_extract_string(payload, '$.max') AS hi
    FROM events
    WHERE kind = 'nonfinite_origin' AND json_valid(payload)
),
origin_hits AS (
    SELECT run_id, step, seq, 0 AS source_order, module AS subject, module_type,
           CASE WHEN module = '(input)' THEN 'the model''s input'
                WHEN own_code THEN 'made by the forward code of a ' || coalesce(module_type, 'module')
                    || ' itself: its submodules'' outputs were finite; output'
                ELSE 'forward output of a ' || coalesce(module_type, 'module') END
           || coalesce(' (' || numel || ' elements)', '')
           || CASE WHEN nonfinite IS NOT NULL THEN ': ' || nonfinite || ' non-finite'
                   WHEN total = 'Infinity' THEN ': holds +Inf'
                   WHEN total = '-Infinity' THEN ': holds -Inf'
                   WHEN total IS NOT NULL THEN ': holds NaN (or both +Inf and -Inf)'
                   WHEN lo IS NOT NULL OR hi IS NOT NULL
                   THEN ': min ' || coalesce(lo, '?') || ', max ' || coalesce(hi, '?')
                   ELSE '' END AS detail
    FROM origins
),
activation_hits AS (
    SELECT run_id, step, seq, 1 AS source_order, module AS subject, module_type,
           printf('forward output of a %s (%d elements): %d non-finite',
                  module_type, numel, nonfinite) AS detail
    FROM activations
    WHERE nonfinite > 0
),
tensor_hits AS (
    SELECT run_id, step, seq, 2 AS source_order,
           kind || ' of ' || param AS subject, NULL AS module_type,
           printf('%d of %d elements non-finite', nonfinite, numel) AS detail
    FROM tensors
    WHERE nonfinite > 0
),
scalar_hits AS (
    SELECT run_id, step, seq, 3 AS source_order,
           name || coalesce('/' || split, '') AS subject, NULL AS module_type,
           CASE WHEN isnan(value) THEN 'NaN' WHEN value > 0 THEN '+Inf' ELSE '-Inf' END AS detail
    FROM scalars
    WHERE NOT isfinite(value)
),
hits AS (
    SELECT * FROM origin_hits
    UNION ALL SELECT * FROM activation_hits
    UNION ALL SELECT * FROM tensor_hits
    UNION ALL SELECT * FROM scalar_hits
),
firsts AS (
    SELECT run_id,
           arg_min(subject, (step, source_order, seq)) AS subject,
           arg_min(detail, (step, source_order, seq)) AS detail,
           min(step) AS step,
           count(DISTINCT subject) AS subjects,
           arg_min(subject, (step, source_order, seq)) FILTER (WHERE source_order <= 1)
               AS origin_module,
           arg_min(module_type, (step, source_order, seq)) FILTER (WHERE source_order <= 1)
               AS origin_module_type,
           min(step) FILTER (WHERE source_order <= 1) AS first_forward_step,
           min(step) FILTER (WHERE source_order = 2) AS first_tensor_step,
           min(step) FILTER (WHERE source_order = 3) AS first_scalar_step
    FROM hits GROUP BY run_id
)
SELECT run_id, subject, step,
       printf('first non-finite value at step %d: %s (%s); %d modules/tensors/metrics affected in total',
              step, subject, detail, subjects) AS message,
       json_object('first_step', step, 'first', subject, 'detail', detail,
                   'affected', subjects, 'origin_module', origin_module,
                   'origin_module_type', origin_module_type,
                   'first_forward_step', first_forward_step,
                   'first_tensor_step', first_tensor_step,
                   'first_scalar_step', first_scalar_step)::VARCHAR AS evidence
FROM firsts
