-- The model's first input per feature (or channel), over its sampled training steps: the
-- median of each step's mean and std (a typical batch; what unnormalized_inputs judges)
-- and the extremes of its min and max. Only the layout of the latest sample is kept (a
-- run whose first input changed shape has two incomparable sets of indices), and the
-- lowest rank, as everywhere in the report.
WITH rows AS (
    SELECT layout, index, step, mean, std, min, max
    FROM inputs
    WHERE run_id = $run_id
    QUALIFY rank = min(rank) OVER ()
), latest AS (
    SELECT arg_max(layout, step) AS layout FROM rows
)
SELECT layout, index,
       median(mean) AS mean, median(std) AS std, min(min) AS lo, max(max) AS hi,
       count(DISTINCT step) AS steps
FROM rows
WHERE layout = (SELECT layout FROM latest)
GROUP BY layout, index
ORDER BY index
