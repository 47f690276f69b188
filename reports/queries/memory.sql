-- Peak memory (CUDA memory allocated on a GPU, the process's peak RSS on the CPU) as the
-- collector read it, at most once a second: null on the other rows. A line per rank, the
-- $max_ranks ranks with the highest peaks, in GiB.
WITH rows AS (
    SELECT rank, step, seq, max_memory_bytes / 2^30 AS gib
    FROM system
    WHERE run_id = $run_id AND max_memory_bytes IS NOT NULL
), ranks AS (
    SELECT rank, row_number() OVER (ORDER BY max(gib) DESC, rank) AS place,
           count(*) OVER () AS ranks
    FROM rows GROUP BY rank
)
SELECT rows.*, ranks.ranks
FROM rows JOIN ranks USING (rank)
WHERE place <= $max_ranks
