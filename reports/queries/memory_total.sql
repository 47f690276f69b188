-- What peak memory is measured against, as the rule memory_pressure reads it: the first
-- run_started's memory_total_bytes (the CUDA device's memory, or the machine's RAM) and
-- device. Runs recorded before memory_total_bytes existed have a null total.
SELECT try_cast(json_extract(payload, '$.memory_total_bytes') AS BIGINT) AS total,
       json_extract_string(payload, '$.device') AS device
FROM events
WHERE run_id = $run_id AND kind = 'run_started'
ORDER BY attempt, rank, step, seq
LIMIT 1
