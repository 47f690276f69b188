-- After sampled.sql (its CTE s): the first and the last sample of each module and kind.
SELECT s.module, s.what, s.step, s.shape, s.dtype, s.data, s.lo, s.hi
FROM s
JOIN (SELECT module, what, min(step) AS first_step, max(step) AS last_step
      FROM s GROUP BY module, what) b USING (module, what)
WHERE s.step = b.first_step OR s.step = b.last_step
ORDER BY s.step
