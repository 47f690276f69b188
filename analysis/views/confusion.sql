-- view: confusion
-- The confusion matrix of each run, split and step at which predictions were logged:
-- one row per non-empty cell, `count` examples of `true_class` predicted as
-- `predicted_class`, summed over calls and ranks. Per-class recall at a step:
--   sum(count) FILTER (WHERE true_class = predicted_class) / sum(count), by true_class.
-- `epoch`: the latest epoch any call of that split and step gave (one per matrix).
WITH cells AS (
    SELECT run_id, split, step, max(epoch) AS epoch, true_class, predicted_class,
           CAST(sum(count) AS BIGINT) AS count
    FROM predictions
    WHERE true_class IS NOT NULL AND predicted_class IS NOT NULL
    GROUP BY run_id, split, step, true_class, predicted_class
)
SELECT run_id, split, step,
       max(epoch) OVER (PARTITION BY run_id, split, step) AS epoch,
       true_class, predicted_class, count
FROM cells
