-- The names first: a run may log a thousand metrics, and only the chosen are read.
SELECT DISTINCT name, split
FROM scalars
WHERE run_id = $run_id
ORDER BY name, split NULLS LAST
