-- The config values of the hyperparameters "What mattered" draws, per run: the keys of
-- the sweep_of macro (flattened: `opt.lr`) that analysis.sweep ranked, as text and as a
-- number (NULL unless a JSON number).
SELECT run_id, key, value, number
FROM sweep_of($name, $split, $goal)
WHERE list_contains($keys, key) AND list_contains($run_ids, run_id)
ORDER BY run_id, key
