-- rule: data_bottleneck
-- severity: warning
-- title: Data loading bottleneck
-- requires: system>=10
-- param: threshold = 0.5
-- param: sustained = 0.5
-- param: skip = 5
-- seed: part 6 §5.2 (data loading bottleneck: DataLoader num_workers, prefetch_factor), part 6 §5.1 (training too slow)
-- suggestion: Load batches in parallel with the training step: DataLoader(num_workers=4 or more, prefetch_factor=2-4, pin_memory=True, persistent_workers=True); move heavy decoding and augmentation out of __getitem__'s hot path (or onto the GPU), and cache or pre-process the dataset once.
-- null: a healthy run waits for its data a small share of each step (the corpus's healthy runs: at most 15 % on any timed step's median), however its loader is built
-- false_alarms: none seen: 0 of 48 healthy runs of tests/corpus on either half (a wait of 50 % of the step on half the steps is 3x the worst healthy run); recall on its 2 labelled runs (82 % wait)
-- `system.data_time_s` is how long a step waited between the end of the previous
-- optimizer step and the first training forward (collector/system.py): data loading,
-- plus host-to-device copies and whatever else the loop does there; steps mixed with an
-- evaluation are not timed. A step is data-bound when that wait is at least `threshold`
-- (half) of its time, and the rule fires when at least `sustained` (half) of the timed
-- steps are, after the first `skip` timed steps (DataLoader workers starting). Both
-- halves are SageMaker Debugger's IOBottleneck defaults (io_threshold 50%, threshold
-- 50% of the time). The PyTorch profiler's TensorBoard plugin already recommends
-- num_workers at 5% of step time in the DataLoader, but it times the DataLoader alone;
-- our window also holds the loop's own overhead (25-45% in the demo's 6-10 ms steps on
-- in-memory tensors), so only a majority of the step is unambiguous. Ranks are judged
-- together: every timed step of every rank is one sample.
WITH timed AS (
    SELECT run_id, rank, step, step_time_s, data_time_s,
           data_time_s / step_time_s AS share,
           row_number() OVER (PARTITION BY run_id, rank ORDER BY step) AS i
    FROM system
    WHERE isfinite(step_time_s) AND isfinite(data_time_s)
      AND step_time_s > 0 AND data_time_s >= 0
),
per_run AS (
    SELECT run_id,
           count(*) AS steps,
           count(*) FILTER (WHERE share >= $threshold) AS bound,
           min(step) FILTER (WHERE share >= $threshold) AS first_step,
           median(share) AS median_share,
           sum(data_time_s) / sum(step_time_s) AS total_share,
           median(data_time_s) AS median_data_s,
           median(step_time_s) AS median_step_s,
           sum(data_time_s) AS data_s,
           sum(step_time_s) AS step_s,
           min(step) AS from_step, max(step) AS to_step
    FROM timed
    WHERE i > $skip
    GROUP BY run_id
)
SELECT run_id,
       'data_time_s' AS subject,
       first_step AS step,
       printf('training waits for data: %d of %d timed steps (steps %d-%d) spent at least %.0f%% of their time before the forward pass (median %.0f%%: %.3g s of a %.3g s step); %.3g s of %.3g s in all (%.0f%%) went to waiting',
              bound, steps, from_step, to_step, 100 * $threshold, 100 * median_share,
              median_data_s, median_step_s, data_s, step_s, 100 * total_share) AS message,
       json_object(
           'data_bound_steps', bound, 'timed_steps', steps,
           'data_bound_share', bound / steps,
           'median_data_share', median_share, 'total_data_share', total_share,
           'median_data_time_s', median_data_s, 'median_step_time_s', median_step_s,
           'data_time_s', data_s, 'step_time_s', step_s,
           'from_step', from_step, 'to_step', to_step,
           'threshold', $threshold, 'sustained', $sustained, 'skip', $skip
       )::VARCHAR AS evidence
FROM per_run
WHERE bound >= $sustained * steps AND bound > 0
