-- view: residuals
-- Regression predictions per run, split, step and output column `index`, over every
-- example logged there (calls and ranks merged: means weighted by their counts, centred
-- sums of squares plus the spread of the means, Chan et al.'s update, so a large offset
-- costs no digits): the targets' and the outputs' mean and standard deviation
-- (population), the errors (output - target): `bias` (their mean), `rmse`, `mae` and
-- `max_abs_error`, and `r2` = 1 - MSE / variance of the targets (NULL when the targets
-- do not vary; scikit-learn's r2_score).
WITH logged AS (
    SELECT run_id, split, step, epoch, index, count AS n,
           target_mean, target_m2, output_mean, output_m2, error_mean, error_m2,
           error_abs_mean, error_abs_max
    FROM predictions
    WHERE index IS NOT NULL AND count > 0
),
centred AS (
    SELECT *,
           target_mean - sum(n * target_mean) OVER g / sum(n) OVER g AS t_off,
           output_mean - sum(n * output_mean) OVER g / sum(n) OVER g AS o_off,
           error_mean - sum(n * error_mean) OVER g / sum(n) OVER g AS e_off
    FROM logged
    WINDOW g AS (PARTITION BY run_id, split, step, index)
),
merged AS (
    SELECT run_id, split, step, max(epoch) AS epoch, index,
           CAST(sum(n) AS BIGINT) AS count,
           sum(n * target_mean) / sum(n) AS target_mean,
           (sum(target_m2) + sum(n * t_off * t_off)) / sum(n) AS target_var,
           sum(n * output_mean) / sum(n) AS output_mean,
           (sum(output_m2) + sum(n * o_off * o_off)) / sum(n) AS output_var,
           sum(n * error_mean) / sum(n) AS bias,
           (sum(error_m2) + sum(n * e_off * e_off)) / sum(n) AS error_var,
           sum(n * error_abs_mean) / sum(n) AS mae,
           max(error_abs_max) AS max_abs_error
    FROM centred
    GROUP BY run_id, split, step, index
)
SELECT run_id, split, step,
       max(epoch) OVER (PARTITION BY run_id, split, step) AS epoch,
       index, count,
       target_mean, sqrt(target_var) AS target_std,
       output_mean, sqrt(output_var) AS output_std,
       bias, sqrt(error_var + bias * bias) AS rmse, mae, max_abs_error,
       CASE WHEN target_var > 0 THEN 1 - (error_var + bias * bias) / target_var END AS r2
FROM merged
