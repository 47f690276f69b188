-- view: samples
-- One row per recorded samples value; a resumed run replays steps, so for each
-- (run, rank, step, module, what) only the latest attempt that recorded it is kept.
SELECT * FROM raw_samples
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, module, what)
