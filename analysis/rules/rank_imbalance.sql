-- rule: rank_imbalance
-- severity: warning
-- title: Straggler rank
-- requires: system>=10
-- param: ratio = 1.5
-- param: skip = 5
-- seed: part 6 §5.1 (training too slow), part 6 §5.2 (data loading bottleneck), applied per rank of a distributed run
-- suggestion: Find what is different on the slow rank: its data loading (num_workers, a slow or remote disk, a shard of larger samples), its host (CPU contention, thermal throttling, a slower GPU or link) or extra work done only there (logging, checkpointing, evaluation on rank 0); balance shards by size, move rank-0-only work off the training step, and compare the ranks' step times again.
-- null: the ranks of a healthy data-parallel run take about the same time per step and wait about the same for data
-- false_alarms: 0 of 48 healthy single-rank runs of tests/corpus (it needs several ranks to fire); a 1.5x straggler is far outside the spread of lock-stepped ranks
-- Each rank writes its own `system` rows (collector/distributed.py). In synchronous
-- data parallelism (DDP) every rank waits for the slowest in the gradient all-reduce,
-- so a straggler shows in two ways: its own step takes longer (when ranks are not
-- lock-stepped), or it spends longer waiting for data while the others spend that
-- time waiting inside backward (their compute time grows, their data wait does not).
-- Per rank we take the median step time and data wait over its timed steps after the
-- first `skip` (start-up), and compare with the median of the other ranks' medians: a
-- rank is a straggler when its step is at least `ratio` times theirs, or when its
-- extra data wait is at least (`ratio` - 1) of their step time. ratio = 1.5 means a
-- rank loses half a step per step: NVIDIA's straggler detector (nvidia-resiliency-ext)
-- scores a rank by the fastest rank's time over its own, and 1.5 is a score of 0.67;
-- medians keep single slow steps (a GC pause, a checkpoint) from deciding. A run with
-- one rank has nothing to compare and yields no finding.
WITH timed AS (
    SELECT run_id, rank, step, step_time_s, data_time_s,
           row_number() OVER (PARTITION BY run_id, rank ORDER BY step) AS i
    FROM system
    WHERE isfinite(step_time_s) AND isfinite(data_time_s)
      AND step_time_s > 0 AND data_time_s >= 0
),
per_rank AS (
    SELECT run_id, rank,
           count(*) AS steps,
           median(step_time_s) AS step_s,
           median(data_time_s) AS data_s,
           min(step) AS from_step
    FROM timed
    WHERE i > $skip
    GROUP BY run_id, rank
),
versus AS (  -- each rank against the median of the other ranks of its run
    SELECT p.run_id, p.rank, p.steps, p.step_s, p.data_s, p.from_step,
           median(o.step_s) AS others_step_s,
           median(o.data_s) AS others_data_s,
           count(*) AS other_ranks
    FROM per_rank p JOIN per_rank o ON o.run_id = p.run_id AND o.rank <> p.rank
    GROUP BY ALL
),
slow AS (
    SELECT *,
           step_s >= $ratio * others_step_s AS slow_step,
           data_s - others_data_s >= ($ratio - 1) * others_step_s AS slow_data
    FROM versus
    WHERE others_step_s > 0
)
SELECT run_id,
       'rank ' || rank AS subject,
       from_step AS step,
       CASE WHEN slow_step
            THEN printf('rank %d is a straggler: its median step takes %.3g s, %.1fx the %.3g s of the other %d rank(s) (data wait %.3g s vs %.3g s)',
                        rank, step_s, step_s / others_step_s, others_step_s, other_ranks, data_s, others_data_s)
            ELSE printf('rank %d is a straggler: it waits %.3g s for data per step against %.3g s on the other %d rank(s), %.0f%% of their %.3g s step; they wait for it in the all-reduce',
                        rank, data_s, others_data_s, other_ranks, 100 * (data_s - others_data_s) / others_step_s, others_step_s)
       END AS message,
       json_object(
           'rank', rank, 'timed_steps', steps,
           'median_step_time_s', step_s, 'median_data_time_s', data_s,
           'others_median_step_time_s', others_step_s,
           'others_median_data_time_s', others_data_s,
           'step_ratio', step_s / others_step_s,
           'extra_data_share', (data_s - others_data_s) / others_step_s,
           'other_ranks', other_ranks, 'ratio', $ratio, 'skip', $skip
       )::VARCHAR AS evidence
FROM slow
WHERE slow_step OR slow_data
