-- view: modules
-- The model summary of each run, from its latest attempt.
SELECT * FROM raw_modules
QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank)
