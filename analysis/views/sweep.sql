-- view: sweep
-- The runs' hyperparameters against their outcome, one row per run and config key
-- (flattened: `opt.lr`), for your own SQL over a sweep: key, value (text), number (NULL
-- unless a JSON number), outcome (the best validation loss, loss/val: its lowest finite
-- value), status and diverged (the validation or training loss went NaN/Inf). Any other
-- metric: `SELECT * FROM sweep_of('acc', 'val', 'max')`; `telemetry sweep` ranks them.
SELECT * FROM sweep_of('loss', 'val', 'min')
