-- macros: curves
-- The metric curves the rules read, defined once so that a change lands in every rule.

-- val_curve(scalar_name): one row per run and validation step of the scalar
-- `scalar_name` (run_id, step, value), the ranks averaged, non-finite values left out. Used by early_stopping
-- (the monitored loss and the accuracy), overfitting (the validation loss) and
-- divergence (the validation accuracy).
CREATE OR REPLACE MACRO val_curve(scalar_name) AS TABLE
    SELECT run_id, step, avg(value) AS value
    FROM scalars
    WHERE name = scalar_name AND split = 'val' AND isfinite(value)
    GROUP BY run_id, step;

-- loss_acc_points(loss_name, acc_name): one row per run, metric (`loss_name` or
-- `acc_name`), split ('train', 'val') and step (run_id, name, split, step, value), the
-- ranks averaged; non-finite values stay (the rules look for them). Used by underfitting
-- and loss_not_decreasing.
CREATE OR REPLACE MACRO loss_acc_points(loss_name, acc_name) AS TABLE
    SELECT run_id, name, split, step, avg(value) AS value
    FROM scalars
    WHERE name IN (loss_name, acc_name) AND split IN ('train', 'val')
    GROUP BY run_id, name, split, step;

-- smooth3(x, part, ord): `x` smoothed by a 3-point running median over its curve (the
-- rows of one `part`, a run, in `ord` order, a step); at either end the median of the 3
-- points from that end, and `x` itself on a curve of fewer than 3 points. Window
-- functions: use it in a SELECT list. Used by overfitting (the validation loss),
-- accuracy_plateau (the evaluations) and divergence (the validation accuracy). Each
-- window's median is list_median of its list: the value a windowed median() gives, at
-- a fraction of its cost on a curve of 20k points.
CREATE OR REPLACE MACRO smooth3(x, part, ord) AS
    CASE WHEN count(*) OVER (PARTITION BY part) < 3 THEN x
         WHEN lag(x) OVER (PARTITION BY part ORDER BY ord) IS NULL
         THEN list_median(list(x) OVER (PARTITION BY part ORDER BY ord
                              ROWS BETWEEN CURRENT ROW AND 2 FOLLOWING))
         WHEN lead(x) OVER (PARTITION BY part ORDER BY ord) IS NULL
         THEN list_median(list(x) OVER (PARTITION BY part ORDER BY ord
                              ROWS BETWEEN 2 PRECEDING AND CURRENT ROW))
         ELSE list_median(list(x) OVER (PARTITION BY part ORDER BY ord
                              ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)) END;
