-- view: exports
-- Export benchmark results, as written.
SELECT * FROM raw_exports
