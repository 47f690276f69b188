SELECT step, payload
FROM events
WHERE run_id = $run_id AND kind = 'nonfinite_origin'
ORDER BY step, attempt, seq
