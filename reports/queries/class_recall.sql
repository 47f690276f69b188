-- Recall of each of $classes (true classes) in $split at every step that logged
-- predictions: the share of the class's examples predicted as that class.
SELECT true_class, step,
       coalesce(sum(count) FILTER (WHERE predicted_class = true_class), 0) / sum(count) AS recall
FROM confusion
WHERE run_id = $run_id AND split = $split AND list_contains($classes, true_class)
GROUP BY true_class, step
