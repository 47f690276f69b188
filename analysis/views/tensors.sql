-- view: tensors
-- One row per recorded tensors value; a resumed run replays steps, so for each
-- (run, rank, step, param, kind) only the latest attempt that recorded it is kept.
SELECT * FROM raw_tensors
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, param, kind)
