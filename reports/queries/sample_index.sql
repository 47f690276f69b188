-- After sampled.sql (its CTE s): per sampled module and kind, its steps and the
-- shape of its latest sample.
SELECT module, what, list(step ORDER BY step) AS steps, min(seq) AS first_seq,
       arg_max(shape, step) AS shape
FROM s GROUP BY module, what
ORDER BY first_seq
