-- Every run's validation metrics (the run comparison and the runs table): best and final.
SELECT s.run_id, s.name AS metric,
       min(s.value) FILTER (WHERE isfinite(s.value)) AS lowest,
       max(s.value) FILTER (WHERE isfinite(s.value)) AS highest,
       arg_max(s.value, s.step) AS final,
       count(*) AS n,
       any_value(g.goal) AS goal
FROM scalars s LEFT JOIN metric_goals g USING (run_id, name)
WHERE s.split = 'val'
GROUP BY s.run_id, s.name
ORDER BY s.run_id, s.name
