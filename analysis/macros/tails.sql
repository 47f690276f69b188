-- macros: tails
-- The sustained-tail window of the activation rules, defined once.

-- in_tail(i, n, tail_frac, min_samples): true for the i-th of n sampled steps (1-based,
-- in step order) when it lies in the tail the rule judges: the last `tail_frac` of the
-- samples, at least `min_samples` of them, and only on curves of at least `min_samples`
-- samples. Used by dead_relu and saturated_activations.
CREATE OR REPLACE MACRO in_tail(i, n, tail_frac, min_samples) AS
    n >= min_samples AND i > n - greatest(ceil(n * tail_frac), min_samples);
