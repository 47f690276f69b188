-- view: residuals
-- Regression predictions per run, split, step and output column `index`, over every
-- example logged there (calls and ranks summed): the targets' and the outputs' mean and
-- standard deviation (population), the errors (output - target): `bias` (their mean),
-- `rmse`, `mae` and `max_abs_error`, and `r2` = 1 - MSE / variance of the targets (NULL
-- when the targets do not vary). Variances come from sums of squares: a column whose
-- mean is 1e7 or more of its standard deviations loses their digits (as float64 does).
WITH summed AS (
    SELECT run_id, split, step, max(epoch) AS epoch, index,
           CAST(sum(count) AS BIGINT) AS count,
           sum(target_sum) AS t, sum(target_sq_sum) AS tt,
           sum(output_sum) AS o, sum(output_sq_sum) AS oo,
           sum(error_sum) AS e, sum(error_sq_sum) AS ee, sum(error_abs_sum) AS ea,
           max(error_abs_max) AS error_abs_max
    FROM predictions
    WHERE index IS NOT NULL AND count > 0
    GROUP BY run_id, split, step, index
),
moments AS (
    SELECT *,
           t / count AS target_mean, greatest(tt / count - (t / count) * (t / count), 0) AS target_var,
           o / count AS output_mean, greatest(oo / count - (o / count) * (o / count), 0) AS output_var,
           ee / count AS mse
    FROM summed
)
SELECT run_id, split, step,
       max(epoch) OVER (PARTITION BY run_id, split, step) AS epoch,
       index, count,
       target_mean, sqrt(target_var) AS target_std,
       output_mean, sqrt(output_var) AS output_std,
       e / count AS bias, sqrt(mse) AS rmse, ea / count AS mae,
       error_abs_max AS max_abs_error,
       CASE WHEN target_var > 0 THEN 1 - mse / target_var END AS r2
FROM moments
