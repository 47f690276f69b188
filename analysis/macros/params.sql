-- macros: params
-- The parameter rules' view of the tensors stream, defined once so that they read it in
-- one pass instead of joining it with itself.

-- param_steps(kinds): one row per run, rank, sampled step and parameter (run_id, rank,
-- step, param) with what the rows of each kind in `kinds` (a list of 'grad', 'weight',
-- 'update') said: has_<kind> (a row of that kind was written), <kind>_norm and
-- <kind>_seq; rows of the other kinds are not read (their columns are null). One grouped
-- pass over the stream in place of a join of it with itself on (run_id, rank, step,
-- param, kind): the join of three kinds of a 100M-row stream builds hash tables of tens
-- of millions of rows, the pass reads each row once. The collector writes at most one
-- row per (rank, step, param, kind) and the tensors view keeps the latest attempt of a
-- resumed run, so each kind's value is that one row's. A row without a parameter name
-- (param null) matches no other row: its group carries has_<kind> for the step, never a
-- pair. Used by update_ratio (update, weight) and unused_parameters (grad, weight);
-- columns a rule does not read are not computed.
CREATE OR REPLACE MACRO param_steps(kinds) AS TABLE
    SELECT run_id, rank, step, param,
           count(*) FILTER (WHERE kind = 'grad') > 0 AS has_grad,
           any_value(norm) FILTER (WHERE kind = 'grad') AS grad_norm,
           any_value(seq) FILTER (WHERE kind = 'grad') AS grad_seq,
           count(*) FILTER (WHERE kind = 'weight') > 0 AS has_weight,
           any_value(norm) FILTER (WHERE kind = 'weight') AS weight_norm,
           any_value(seq) FILTER (WHERE kind = 'weight') AS weight_seq,
           count(*) FILTER (WHERE kind = 'update') > 0 AS has_update,
           any_value(norm) FILTER (WHERE kind = 'update') AS update_norm,
           any_value(seq) FILTER (WHERE kind = 'update') AS update_seq
    FROM tensors
    WHERE list_contains(kinds, kind)
    GROUP BY run_id, rank, step, param;
