-- After grads.sql (its CTE g): the parameters by depth (reports.series.first_order:
-- by their first gradient's step, then seq) and how many steps have gradients: what
-- the gradient charts are planned on.
SELECT coalesce(list(param ORDER BY first), []) AS params,
       (SELECT count(DISTINCT step) FROM g) AS steps
FROM (SELECT param, min((step, seq)) AS first FROM g GROUP BY param)
