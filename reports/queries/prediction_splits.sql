-- The splits with predictions (tel.log_predictions): classification (the confusion view)
-- or regression (residuals), the latest step of each, how many steps logged them, and
-- for regression how many output columns. log_predictions requires a split; rows
-- without one (another writer's) have no place in a per-split chart and are left out.
SELECT 'confusion' AS kind, split, max(step) AS step, count(DISTINCT step) AS steps,
       NULL::BIGINT AS outputs
FROM confusion WHERE run_id = $run_id AND split IS NOT NULL GROUP BY split
UNION ALL
SELECT 'residuals', split, max(step), count(DISTINCT step), count(DISTINCT index)
FROM residuals WHERE run_id = $run_id AND split IS NOT NULL GROUP BY split
