-- A module called twice in one forward (shared weights) has two rows per step: the
-- first call is the one in forward order.
SELECT module, module_type, step, seq, std, zero_frac, dead_frac, saturated_frac
FROM activations
WHERE run_id = $run_id
QUALIFY rank = min(rank) OVER ()
    AND row_number() OVER (PARTITION BY rank, step, module ORDER BY seq) = 1
ORDER BY step, seq
