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
-- model computes: the formats whose parity verdict fails. The verdict (tolerances, the
-- lossy formats, the metric drop) is defined once, by export_verdicts in
-- analysis/macros/exports.sql, which `telemetry export-bench`'s table and the
-- export_summary rule read too. Exact formats may differ by float rounding only (1% of
-- the output scale covers TF32 and fused kernels; a layer left in training mode or a
-- mistranslated op moves outputs far more); lossy ones are judged by the task metric
-- when there is one, else by lossy_tolerance; non-finite outputs always count.
SELECT run_id,
       format AS subject,
       step,
       CASE parity
           WHEN 'non-finite' THEN
               printf('%s produces non-finite outputs where eager does not (max |diff| %s on a fixed batch)',
                      format, max_abs_diff::VARCHAR)
           WHEN 'metric drop' THEN
               printf('%s loses %s: %.4g against eager''s %.4g (%.1f%% lower); its outputs differ by up to %.3g (%.2f%% of their scale)',
                      format, metric_name, metric_value, eager_metric, 100 * metric_drop,
                      max_abs_diff, 100 * max_rel_diff)
           ELSE CASE WHEN lossy THEN
               printf('%s changes the outputs by up to %.3g (%.1f%% of their scale, tolerance %.1f%%) on a fixed batch; no eval data measured whether accuracy suffers',
                      format, max_abs_diff, 100 * max_rel_diff, 100 * $lossy_tolerance)
           ELSE
               printf('%s does not reproduce eager: outputs differ by up to %.3g (%.3f%% of their scale, tolerance %.3f%%) on a fixed batch',
                      format, max_abs_diff, 100 * max_rel_diff, 100 * $exact_tolerance)
           END
       END AS message,
       json_object(
           'format', format, 'verdict', parity, 'lossy', lossy,
           'max_abs_diff', max_abs_diff, 'max_rel_diff', max_rel_diff,
           'metric_name', metric_name, 'metric_value', metric_value,
           'eager_metric', eager_metric, 'metric_drop', metric_drop,
           'exact_tolerance', $exact_tolerance, 'lossy_tolerance', $lossy_tolerance,
           'max_metric_drop', $max_metric_drop
       )::VARCHAR AS evidence
FROM export_verdicts($exact_tolerance, $lossy_tolerance, $max_metric_drop)
WHERE parity_failed
ORDER BY run_id, format
