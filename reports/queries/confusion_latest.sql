-- The confusion matrix of each of $splits at its step in $steps (its latest), cut to the
-- $max_classes most frequent true classes (rows); a prediction of any class not shown is
-- counted in the `other` column (predicted_class null). Each row keeps its true class's
-- whole count (`support`, for the recall) and its hits; `classes`, `examples` and
-- `all_hits` (examples predicted as their own class) are the split's, before the cut.
WITH wanted AS (
    SELECT unnest($splits) AS split, unnest($steps) AS step
), cells AS (
    SELECT c.split, c.step, c.true_class, c.predicted_class, c.count
    FROM confusion c JOIN wanted w ON c.split = w.split AND c.step = w.step
    WHERE c.run_id = $run_id
), support AS (
    SELECT split, true_class, sum(count) AS support,
           coalesce(sum(count) FILTER (WHERE predicted_class = true_class), 0) AS hits
    FROM cells GROUP BY split, true_class
), shown AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY split ORDER BY support DESC, true_class) AS place,
               count(*) OVER (PARTITION BY split) AS classes,
               sum(support) OVER (PARTITION BY split) AS examples,
               sum(hits) OVER (PARTITION BY split) AS all_hits
        FROM support
    ) WHERE place <= $max_classes
)
SELECT c.split, c.step, c.true_class,
       CASE WHEN p.true_class IS NOT NULL THEN c.predicted_class END AS predicted_class,
       CAST(sum(c.count) AS BIGINT) AS count,
       CAST(any_value(s.support) AS BIGINT) AS support,
       CAST(any_value(s.hits) AS BIGINT) AS hits,
       any_value(s.classes) AS classes,
       CAST(any_value(s.examples) AS BIGINT) AS examples,
       CAST(any_value(s.all_hits) AS BIGINT) AS all_hits
FROM cells c
JOIN shown s ON c.split = s.split AND c.true_class = s.true_class
LEFT JOIN shown p ON c.split = p.split AND c.predicted_class = p.true_class
GROUP BY ALL
ORDER BY c.split, c.true_class, predicted_class NULLS LAST
