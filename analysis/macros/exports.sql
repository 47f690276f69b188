-- macros: exports
-- The latest export benchmark of each run, defined once.

-- latest_exports(): the rows of the `exports` view (every column) that belong to each
-- run's latest export benchmark: its highest step, then its highest attempt, then its
-- lowest rank (a run benchmarked twice shows its last one). Used by export_parity,
-- export_summary and the report (reports/data.py).
CREATE OR REPLACE MACRO latest_exports() AS TABLE
    SELECT * FROM exports
    QUALIFY dense_rank() OVER (PARTITION BY run_id ORDER BY step DESC, attempt DESC, rank) = 1;
