-- rule: memory_pressure
-- severity: warning
-- title: Memory pressure
-- requires: events
-- param: min_share = 0.9
-- seed: part 6 (common problems: out of memory: a smaller batch, mixed precision, gradient checkpointing)
-- suggestion: Make room before the next run: lower the batch size (accumulate gradients over micro-batches to keep the effective batch), train in mixed precision (torch.autocast with bf16, or fp16 with a GradScaler), checkpoint activations (torch.utils.checkpoint) in the deepest blocks, and keep no graph alive across steps (log loss.item(), not loss).
-- null: a healthy run's peak memory (system.max_memory_bytes: CUDA memory allocated on a GPU, the process's peak RSS on the CPU) stays below 90 % of what it is measured against (run_started.memory_total_bytes: the device's memory, the machine's RAM), leaving room for the allocator's fragmentation and a larger batch, and it does not fail out of memory
-- false_alarms: none on the labelled corpus's healthy runs (peaks of well under 10 % of this 24 GiB machine); a run that fills the device on purpose (a batch size tuned to the limit) is reported, as the risk it is: the next larger input fails
-- One finding per run: the run failed out of memory (run_failed whose exception says so:
-- OutOfMemoryError, "out of memory", the CPU allocator's "can't allocate memory" or
-- "not enough memory"), or its peak reached `min_share` of the memory it is measured
-- against. Runs recorded before run_started carried memory_total_bytes are judged on
-- the failure alone.
WITH started AS (
    SELECT run_id, arg_min(payload, (attempt, rank, step, seq)) AS payload
    FROM events WHERE kind = 'run_started'
    GROUP BY run_id
),
totals AS (
    SELECT run_id,
           try_cast(json_extract(payload, '$.memory_total_bytes') AS BIGINT) AS total,
           json_extract_string(payload, '$.device') AS device
    FROM started
),
peaks AS (
    SELECT run_id, max(max_memory_bytes) AS peak,
           arg_max(step, max_memory_bytes) AS peak_step
    FROM system WHERE max_memory_bytes IS NOT NULL
    GROUP BY run_id
),
oom AS (
    SELECT run_id, step, type, msg FROM failures()  -- analysis/macros/failures.sql
),
judged AS (
    SELECT t.run_id, t.total, t.device, p.peak, p.peak_step,
           o.step AS failed_step, o.type, o.msg,
           o.run_id IS NOT NULL AND (o.type = 'OutOfMemoryError'
               OR regexp_matches(o.msg, '(?i)out of memory|can''t allocate memory|not enough memory'))
               AS failed_oom,
           t.total > 0 AND p.peak >= $min_share * t.total AS near_full
    FROM totals t LEFT JOIN peaks p USING (run_id) LEFT JOIN oom o USING (run_id)
)
SELECT run_id,
       CASE WHEN device LIKE 'cuda%' THEN 'cuda memory' ELSE 'host memory' END AS subject,
       CASE WHEN failed_oom THEN failed_step ELSE peak_step END AS step,
       CASE WHEN failed_oom
            THEN printf('the run failed out of memory at step %d (%s)%s', failed_step,
                        CASE WHEN length(msg) > 160 THEN left(msg, 160) || '...' ELSE msg END,
                        CASE WHEN peak IS NOT NULL AND total > 0
                             THEN printf('; its recorded peak was %.2f GiB of %.2f GiB (%.0f%%)',
                                         peak / 2^30, total / 2^30, 100 * peak / total)
                             ELSE '' END)
            ELSE printf('peak memory %.2f GiB reached %.0f%% of the %.2f GiB it has (%s) at step %d',
                        peak / 2^30, 100 * peak / total, total / 2^30, device, peak_step)
       END AS message,
       json_object('failed_out_of_memory', failed_oom, 'peak_bytes', peak,
                   'total_bytes', total, 'share', CASE WHEN total > 0 THEN peak / total END,
                   'device', device, 'min_share', $min_share)::VARCHAR AS evidence
FROM judged
WHERE failed_oom OR near_full
