-- rule: missing_eval_mode
-- severity: warning
-- title: Validation in training mode
-- requires: events
-- param: min_share = 0.5
-- seed: part 3 §3 (Dropout is active only in training), part 5 §1 (model.eval() before inference), part 1 §3 (validation curves)
-- suggestion: Call model.eval() before validating and model.train() after it (torch.no_grad() turns off gradients, not Dropout or BatchNorm's batch statistics); the validation numbers logged so far understate the model, and BatchNorm's running statistics were updated with validation batches.
-- null: validation runs after model.eval(), so no forward without gradients finds a Dropout, BatchNorm, InstanceNorm (with running statistics), dropout-carrying MultiheadAttention or multi-layer RNN module in training mode; a deliberate one (recalibrating BatchNorm statistics, Monte-Carlo dropout) happens after a minority of the steps that run forwards without gradients
-- false_alarms: none possible on a run that calls model.eval(): the collector sees the modules' mode, nothing is estimated; 0 of the corpus's healthy runs (tests/corpus, both halves)
-- The collector looks at every forward of the model under torch.no_grad() or
-- inference_mode (collector/modes.py): the first one with a mode-dependent module in
-- training mode is an `eval_in_training_mode` event naming the modules, and the run's end
-- event counts the distinct steps after which forwards without gradients ran and those
-- of them with such a module training. One finding per run: the event, unless the run
-- ended with such forwards after fewer than `min_share` (half) of those steps (a one-off
-- on purpose). A run still going is judged on the event alone.
WITH first_seen AS (
    SELECT run_id, min(step) AS step, arg_min(payload, step) AS payload
    FROM events
    WHERE kind = 'eval_in_training_mode'
    GROUP BY run_id
),
ended AS (
    SELECT run_id, arg_max(payload, step) AS payload
    FROM events
    WHERE kind IN ('run_finished', 'run_failed')
    GROUP BY run_id
),
judged AS (
    SELECT f.run_id, f.step,
           f.payload::JSON AS seen,
           try_cast(json_extract(e.payload, '$.inference_forwards.steps') AS BIGINT) AS steps,
           try_cast(json_extract(e.payload, '$.inference_forwards.training_mode_steps')
                    AS BIGINT) AS training_steps
    FROM first_seen f LEFT JOIN ended e USING (run_id)
)
SELECT run_id,
       'model.training' AS subject,
       step,
       printf('validation ran in training mode: forwards without gradients (torch.no_grad/inference_mode) found %s in training mode%s, first after step %d; dropout drops units and BatchNorm normalises with the batch''s own statistics there, so the validation metrics are worse and noisier than the model''s',
              array_to_string(json_extract_string(seen, '$.module_types[*]'), ', ')
                  || ' (' || array_to_string(json_extract_string(seen, '$.modules[*]')[1:3], ', ')
                  || CASE WHEN json_extract(seen, '$.count')::BIGINT > 3
                          THEN printf(', %d in all', json_extract(seen, '$.count')::BIGINT)
                          ELSE '' END || ')',
              CASE WHEN steps IS NOT NULL
                   THEN printf(' after %d of the %d steps that ran such forwards', training_steps, steps)
                   ELSE '' END,
              step) AS message,
       json_object(
           'modules', json_extract(seen, '$.modules'),
           'module_types', json_extract(seen, '$.module_types'),
           'modules_in_training_mode', json_extract(seen, '$.count'),
           'mode_dependent_modules', json_extract(seen, '$.of'),
           'inference_steps', steps, 'training_mode_steps', training_steps,
           'min_share', $min_share
       )::VARCHAR AS evidence
FROM judged
WHERE steps IS NULL OR steps = 0 OR training_steps >= $min_share * steps
