-- view: activations
-- One row per recorded activations value; a resumed run replays steps, so for each
-- (run, rank, step, module) only the latest attempt that recorded it is kept.
SELECT * FROM raw_activations
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, module)
