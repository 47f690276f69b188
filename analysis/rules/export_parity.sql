-- rule: export_parity
-- severity: warning
-- title: Export changes the model
-- requires: exports
-- param: exact_tolerance = 0.01
-- param: lossy_tolerance = 0.1
-- param: max_metric_drop = 0.01
-- seed: part 5 §3 (TorchScript, deployment), part 5 §4 (pruning, quantization, ONNX)
-- suggestion: Compare the exported model with eager on real inputs before shipping it: put the model in eval() before exporting, prefer torch.jit.script or torch.export over tracing when the forward has data-dependent control flow, and prune or quantize less (or fine-tune after pruning, or calibrate static quantization) when accuracy drops.
-- null: an export that reproduces eager (TorchScript, torch.export, ONNX) differs from it by float rounding only, a lossy one (quantized, pruned) loses under a point of its metric
-- false_alarms: not calibrated on training runs (no corpus run exports); tolerances from float32 rounding and the seed's 1 % metric budget, checked in tests/analysis
-- One finding per format of a run's latest export benchmark that changes what the
-- model computes. Parity is max |out - eager| relative to max |eager| on one fixed batch
-- (max_rel_diff). Formats meant to reproduce eager (TorchScript, torch.export, ONNX
-- Runtime) may differ by float rounding only: more than exact_tolerance (1% of the
-- output scale covers TF32 and fused kernels; a layer left in training mode or a
-- mistranslated op moves outputs far more). Lossy formats (int8, fp16, bf16, pruned_*)
-- change outputs by design: they are judged by the task metric when there is one (a
-- relative drop against eager's above max_metric_drop, higher is better), else by
-- lossy_tolerance. Non-finite outputs always count. Every format's metric is checked.
WITH latest AS (  -- each run's latest export benchmark (analysis/macros/exports.sql)
    SELECT * FROM latest_exports()
),
formats AS (
    SELECT run_id, any_value(step) AS step, format,
           any_value(max_abs_diff) AS max_abs_diff,
           any_value(max_rel_diff) AS max_rel_diff,
           any_value(metric_name) AS metric_name,
           any_value(metric_value) AS metric_value,
           format IN ('dynamic_int8', 'fp16', 'bf16') OR format LIKE 'pruned%' AS lossy
    FROM latest
    GROUP BY run_id, format
),
judged AS (
    SELECT f.*,
           e.metric_value AS eager_metric,
           (e.metric_value - f.metric_value) / greatest(abs(e.metric_value), 1e-12) AS metric_drop
    FROM formats f
    LEFT JOIN formats e ON e.run_id = f.run_id AND e.format = 'eager'
    WHERE f.format <> 'eager' AND f.max_rel_diff IS NOT NULL
)
SELECT run_id,
       format AS subject,
       step,
       CASE
           WHEN NOT isfinite(max_rel_diff) THEN
               printf('%s produces non-finite outputs where eager does not (max |diff| %s on a fixed batch)',
                      format, max_abs_diff::VARCHAR)
           WHEN metric_drop > $max_metric_drop THEN
               printf('%s loses %s: %.4g against eager''s %.4g (%.1f%% lower); its outputs differ by up to %.3g (%.2f%% of their scale)',
                      format, metric_name, metric_value, eager_metric, 100 * metric_drop,
                      max_abs_diff, 100 * max_rel_diff)
           WHEN lossy THEN
               printf('%s changes the outputs by up to %.3g (%.1f%% of their scale, tolerance %.1f%%) on a fixed batch; no eval data measured whether accuracy suffers',
                      format, max_abs_diff, 100 * max_rel_diff, 100 * $lossy_tolerance)
           ELSE
               printf('%s does not reproduce eager: outputs differ by up to %.3g (%.3f%% of their scale, tolerance %.3f%%) on a fixed batch',
                      format, max_abs_diff, 100 * max_rel_diff, 100 * $exact_tolerance)
       END AS message,
       json_object(
           'format', format, 'lossy', lossy,
           'max_abs_diff', max_abs_diff, 'max_rel_diff', max_rel_diff,
           'metric_name', metric_name, 'metric_value', metric_value,
           'eager_metric', eager_metric, 'metric_drop', metric_drop,
           'exact_tolerance', $exact_tolerance, 'lossy_tolerance', $lossy_tolerance,
           'max_metric_drop', $max_metric_drop
       )::VARCHAR AS evidence
FROM judged
WHERE NOT isfinite(max_rel_diff)
   OR metric_drop > $max_metric_drop
   OR (NOT lossy AND max_rel_diff > $exact_tolerance)
   OR (lossy AND metric_drop IS NULL AND max_rel_diff > $lossy_tolerance)
ORDER BY run_id, format
