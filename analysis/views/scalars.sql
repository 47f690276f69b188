-- view: scalars
-- One row per recorded scalars value; a resumed run replays steps, so for each
-- (run, rank, step, name, split) only the latest attempt that recorded it is kept.
SELECT * FROM raw_scalars
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, name, split)
