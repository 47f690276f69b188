-- view: predictions
-- What tel.log_predictions recorded: confusion cells (classification) or sums of the
-- targets, outputs and errors per output column (regression), as written; a resumed
-- run replays steps, so for each (run, rank, step, split) only the latest attempt that
-- recorded it is kept (only runs listed in _resumed can hold one twice). The
-- `confusion` and `residuals` views add these rows up.
SELECT * FROM raw_predictions WHERE run_id NOT IN (SELECT run_id FROM _resumed)
UNION ALL
(SELECT * FROM raw_predictions WHERE run_id IN (SELECT run_id FROM _resumed)
 QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, split))
