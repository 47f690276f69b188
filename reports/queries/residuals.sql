-- Regression errors over steps: rmse, bias (the mean of output - target) and r2 of the
-- first $max_outputs output columns of each of $splits, one row per quantity. An r2 is
-- null where the targets did not vary (undefined, not a failure): left out.
WITH r AS (
    SELECT split, index, step, rmse, bias, r2
    FROM residuals
    WHERE run_id = $run_id AND list_contains($splits, split)
    QUALIFY dense_rank() OVER (PARTITION BY split ORDER BY index) <= $max_outputs
)
SELECT 'rmse' AS quantity, split, index, step, rmse AS value FROM r
UNION ALL
SELECT 'bias', split, index, step, bias FROM r
UNION ALL
SELECT 'r2', split, index, step, r2 FROM r WHERE r2 IS NOT NULL
