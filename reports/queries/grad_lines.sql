-- The two gradient line charts, for reports.decimate.decimate_sql: the norm of each
-- parameter in $lines, and the global norm per step (reports.tensors.global_norm: sqrt of
-- the sum of squares; fsum, exact, gives the same sum however the database splits the
-- work; a NaN or Inf in any parameter's norm makes the step's NaN/Inf, a marker). Each
-- line is numbered: DuckDB partitions by an integer in half the time it takes by a name.
SELECT 'norms' AS chart, list_position($lines, param) AS line, param, step, seq, norm,
       NULL::UINTEGER AS params, $line_points AS points
FROM g WHERE list_contains($lines, param)
UNION ALL
SELECT 'global', 0, NULL, step, NULL, sqrt(coalesce(fsum(norm * norm), 0)), count(*)::UINTEGER,
       $global_points
FROM g GROUP BY step
