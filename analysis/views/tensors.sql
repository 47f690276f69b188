-- view: tensors
-- One row per recorded tensors value; a resumed run replays steps, so for each
-- (run, rank, step, param, kind) only the latest attempt that recorded it is kept.
-- Only runs that were resumed (listed in _resumed, made at open time) can hold a
-- step twice: the others skip the window, which costs a sort of the whole stream.
SELECT * FROM raw_tensors WHERE run_id NOT IN (SELECT run_id FROM _resumed)
UNION ALL
(SELECT * FROM raw_tensors WHERE run_id IN (SELECT run_id FROM _resumed)
 QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, rank, step, param, kind))
