-- view: system
-- One row per recorded system value; a resumed run replays steps, so only the latest
-- attempt of each (run, rank, step) is kept.
SELECT * FROM raw_system
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step)
