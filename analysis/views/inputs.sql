-- view: inputs
-- One row per feature (or channel) of the model's input per sampled training forward;
-- a resumed run replays steps, so for each (run, rank, step, index) only the latest
-- attempt that recorded it is kept (only runs listed in _resumed can hold one twice).
SELECT * FROM raw_inputs WHERE run_id NOT IN (SELECT run_id FROM _resumed)
UNION ALL
(SELECT * FROM raw_inputs WHERE run_id IN (SELECT run_id FROM _resumed)
 QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, index))
