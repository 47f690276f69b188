-- One point per (name, split, step): the mean of its rows, as the rules read a curve
-- (analysis/macros/curves.sql). Gradient accumulation logs a row per micro-batch, and
-- drawing each one would zigzag the curve. A NaN or Inf among them stays in the mean,
-- so the step becomes a marker downstream. Only the planned lines are returned ($names,
-- $splits: the chosen metrics' and the learning rate's, each with its $points, for
-- reports.decimate.decimate_sql); `epochs` says whether any row read has an epoch.
WITH s AS (
    SELECT name, split, step, epoch, value, seq
    FROM scalars
    WHERE run_id = $run_id
        AND (list_contains($drawn::VARCHAR[], name) OR name = 'lr' OR starts_with(name, 'lr.group'))
    QUALIFY rank = min(rank) OVER (PARTITION BY name, split)
), plan AS (
    SELECT unnest($names::VARCHAR[]) AS name, unnest($splits::VARCHAR[]) AS split,
           unnest($points::BIGINT[]) AS points
)
SELECT s.name, s.split, step, min(epoch) AS epoch, avg(value) AS value,
       any_value(points) AS points, (SELECT count(epoch) FROM s) AS epochs
FROM s JOIN plan ON s.name = plan.name AND s.split IS NOT DISTINCT FROM plan.split
GROUP BY s.name, s.split, step
