-- view: modules
-- The model summary of each run, from its latest attempt.
-- Only runs that were resumed (listed in _resumed, made at open time) can hold a
-- step twice: the others skip the window, which costs a sort of the whole stream.
SELECT * FROM raw_modules WHERE run_id NOT IN (SELECT run_id FROM _resumed)
UNION ALL
(SELECT * FROM raw_modules WHERE run_id IN (SELECT run_id FROM _resumed)
 QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank))
