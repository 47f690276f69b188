-- rule: run_failed
-- severity: error
-- title: Run failed
-- requires: events
-- seed: part 6 (common problems: the data's shape does not match the model's input; running out of memory; labels outside the classes; tensors on different devices or of different types)
-- suggestion: Read the exception and the step it names; fix the cause and restart from the last checkpoint (Collector(resume=RUN_ID) continues the same run).
-- null: a run that ends by leaving its Collector's with-block normally (or by close()) wrote run_finished; only an exception that left the block (or close(error=...)) writes run_failed, with its type and message, so a healthy run never has one
-- false_alarms: none by construction: it reads the run's own ending, not a statistic (0 of the labelled corpus's healthy runs end failed); a run failed on purpose (an exception the loop raises to stop) is reported too, as the failure it recorded
-- One finding per run whose latest attempt ended with run_failed: the exception's type
-- and message, the step it was raised at, and a suggestion matched from the message,
-- first match wins (the seed's table of common problems):
--   out_of_memory        "out of memory", OutOfMemoryError, the CPU allocator's "can't
--                        allocate memory" (memory_pressure names the peak)
--   labels_out_of_range  a device-side assert, "Target N is out of bounds" (cross-entropy
--                        labels outside 0..classes-1), an index out of range in an embedding
--   shape_mismatch       "shapes cannot be multiplied", "size mismatch", "must match the
--                        size of tensor", "expected input[...] to have N channels", ...
--   device_mismatch      "Expected all tensors to be on the same device", ...
--   dtype_mismatch       "expected scalar type", "must have the same dtype", ...
--   nonfinite            NonFiniteError (Collector(on_nonfinite="raise"))
--   other                anything else: the exception as it is
-- A run that failed before its first optimizer step ("crashed before it trained") says so.
WITH failed AS (
    SELECT run_id, step, type, msg FROM failures()  -- analysis/macros/failures.sql
),
matched AS (
    SELECT *,
           CASE
               WHEN type = 'OutOfMemoryError'
                    OR regexp_matches(msg, '(?i)out of memory|can''t allocate memory|not enough memory')
                   THEN 'out_of_memory'
               WHEN regexp_matches(msg, '(?i)device-side assert|target -?\d+ is out of bounds|t >= 0 && t < n_classes|index out of range in self')
                   THEN 'labels_out_of_range'
               WHEN regexp_matches(msg, '(?i)shapes cannot be multiplied|size mismatch|must match the size of tensor|to have \d+ channels|expected input batch_size|is invalid for input of size|input and target shapes do not match|target size .* must be the same as input size|sizes of tensors must match')
                   THEN 'shape_mismatch'
               WHEN regexp_matches(msg, '(?i)on the same device|expected .* to be on .*device|tensor for argument .* is on')
                   THEN 'device_mismatch'
               WHEN regexp_matches(msg, '(?i)expected scalar type|same dtype|found dtype|expected .*dtype|not implemented for ''')
                   THEN 'dtype_mismatch'
               WHEN type = 'NonFiniteError' THEN 'nonfinite'
               ELSE 'other'
           END AS cause
    FROM failed
)
SELECT run_id,
       type AS subject,
       step,
       printf('the run failed %s with %s: %s',
              CASE WHEN step = 0 THEN 'before its first optimizer step'
                   ELSE printf('at step %d', step) END,
              type,
              CASE WHEN length(msg) > 300 THEN left(msg, 300) || '...' ELSE msg END) AS message,
       json_object('type', type, 'message', left(msg, 2000), 'step', step,
                   'before_training', step = 0, 'cause', cause)::VARCHAR AS evidence,
       CASE cause
           WHEN 'out_of_memory' THEN 'Out of memory: lower the batch size (accumulate gradients over micro-batches to keep the effective batch), train in mixed precision (torch.autocast with bf16 or fp16 and a GradScaler), checkpoint activations (torch.utils.checkpoint), and free what the loop keeps alive (a loss kept with its graph: log loss.item() or the tensor detached).'
           WHEN 'labels_out_of_range' THEN 'A label outside the classes the model predicts: cross-entropy wants class ids in 0..C-1 (C = the last layer''s out_features); check labels.min() and labels.max() against C, re-map labels that start at 1 or hold -1 for "unknown" (ignore_index=-100 skips those), and size the last layer by the number of classes. On a GPU the error says only "device-side assert": rerun on the CPU or with CUDA_LAUNCH_BLOCKING=1 for the line.'
           WHEN 'shape_mismatch' THEN 'The data''s shape does not match the model''s input: print x.shape (and the target''s) before the forward and compare them with the first layer (Linear in_features, Conv in_channels) and with what the loss expects; a missing flatten/view, channels last instead of first, a transposed batch, or a dataset with another number of features are the usual causes.'
           WHEN 'device_mismatch' THEN 'Tensors on different devices: move the model once (model.to(device)) before building the optimizer, and every batch (x.to(device), y.to(device)) in the loop; tensors made inside forward() should follow the input (torch.zeros(..., device=x.device)) or be registered buffers.'
           WHEN 'dtype_mismatch' THEN 'Tensors of different types: inputs as float32 (x.float(); numpy arrays come as float64), class targets as int64 for cross-entropy (y.long()), float targets for MSE/BCE (y.float()); under autocast let it cast, do not mix .half() tensors in by hand.'
           WHEN 'nonfinite' THEN 'Collector(on_nonfinite="raise") stopped the run at the first NaN/Inf: start at the module the nonfinite finding names (clip gradients, lower the learning rate, normalise inputs, guard log/sqrt/division).'
       END AS suggestion
FROM matched
