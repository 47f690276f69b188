WITH s AS (
    SELECT module, what, step, seq, shape, dtype, data, lo, hi
    FROM samples
    WHERE run_id = $run_id
    QUALIFY rank = min(rank) OVER ()
        AND row_number() OVER (PARTITION BY rank, module, what, step ORDER BY seq) = 1
)
