-- The run's gradients (lowest rank): what every gradient chart reduces. The rank is a
-- subquery, not QUALIFY min(rank) OVER (): a window holds every row of the run at once.
WITH g AS (
    SELECT param, step, seq, norm, mean, std, min, max
    FROM tensors
    WHERE run_id = $run_id AND kind = 'grad'
        AND rank = (SELECT min(rank) FROM tensors WHERE run_id = $run_id AND kind = 'grad')
)
