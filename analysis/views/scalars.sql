-- view: scalars
-- One row per recorded scalars value; a resumed run replays steps, so only the latest
-- attempt of each (run, rank, step) is kept.
SELECT * FROM raw_scalars
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step)
