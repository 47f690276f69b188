-- rule: update_ratio
-- severity: warning
-- title: Update/weight ratio out of band
-- when: ended
-- requires: tensors:update>=10, tensors:weight>=10
-- param: low = 1e-5
-- param: high = 0.1
-- param: warmup_frac = 0.1
-- param: warmup_cap = 0.5
-- param: min_samples = 5
-- seed: part 2 §5 (weights update too fast: learning-rate decay or a smoother optimizer such as Adam), part 2 §1 (parameters updating too fast), part 3 §2.1 (some layers' weights barely change), part 6 §4.1 (learning rate too large or too small)
-- suggestion: Too high: lower the learning rate, decay it (StepLR, ReduceLROnPlateau) or add warm-up, or use a smoother optimizer such as Adam. Too low: raise the learning rate and check that gradients reach these layers (see vanishing_gradients); a healthy ||update||/||weight|| is around 1e-3 per step.
-- null: a healthy run's weight matrices move by 1e-4..3e-2 of their norm per optimizer step once warm-up is over (median over its sampled steps; tests/corpus: 3.6e-4..2.5e-2 on the tuning half's 76 matrices); biases and normalisation parameters sit near zero or one and their ratio says nothing about the learning rate
-- false_alarms: under 1 % of healthy runs of 10k steps; calibrated on the tuning half of tests/corpus (23 healthy runs, 76 weight matrices: none within a factor 4 of either edge of the band)
-- ||update|| / ||weight|| per weight matrix and sampled step (update: the change one
-- optimizer step made; weight: the value after it). Karpathy's rule of thumb (CS231n,
-- "ratio of weights:updates") puts a healthy ratio around 1e-3: much lower, the learning
-- rate is too low; much higher, too high. The band is two orders of magnitude either
-- side, [low, high] = [1e-5, 1e-1]: Adam moves each element by about lr, so ordinary
-- settings land at 1e-3..1e-2 (the demo's healthy Adam CNN: 2e-3..9e-3), while above
-- 0.1 a tenth of the weight is replaced every step and below 1e-5 it would take 1e5
-- steps to change by its own size. (SageMaker Debugger's WeightUpdateRatio flags only
-- catastrophes, < 1e-8 or > 10.)
-- The rule of thumb is about weight matrices (and kernels, embeddings, recurrent and
-- attention projections), whose norm is set by the fan-in: a bias or a normalisation
-- layer's scale starts at 0 or 1 whatever the layer's size, so its ratio is large or
-- small by construction (a linear regression's bias moving 27% a step is SGD noise
-- around a small value). Only matrices are judged: parameters named like a weight
-- (`weight` in the last part of the name) that are not in a normalisation layer (its
-- module type says Norm, or its weight has as many elements as its bias: an elementwise
-- scale). Biases and parameters named otherwise (a positional embedding, a temperature,
-- the `group0.3` names of a run collected without its model) are left out.
-- A matrix is out of band when its median ratio over at least min_samples sampled steps
-- after warm-up is outside the band. Warm-up is the first warmup_frac of the run's steps
-- (Adam's first steps and zero-initialised layers make early ratios meaningless) or, when
-- the logged learning rate ramps up, until it first reaches its peak (at most
-- warmup_cap of the run). Updates of exactly zero are `stalled_parameters`' finding and
-- are left out, as are zero weights and non-finite values.
-- One finding per run and direction (the fixes are opposite): the subject is the worst
-- parameter, the evidence lists every offender.
WITH pairs AS (
    SELECT u.run_id, u.param, u.step, u.seq, u.norm / w.norm AS ratio
    FROM tensors u
    JOIN tensors w
      ON w.run_id = u.run_id AND w.rank = u.rank AND w.step = u.step
     AND w.param = u.param AND w.kind = 'weight'
    WHERE u.kind = 'update'
      AND isfinite(u.norm) AND isfinite(w.norm) AND u.norm > 0 AND w.norm > 0
),
shapes AS (  -- one row per parameter: its last name part, its module, its size
    SELECT run_id, param, any_value(numel) AS numel,
           regexp_extract(param, '[^.]*$') AS leaf,
           regexp_replace(param, '\.?[^.]*$', '') AS module
    FROM tensors WHERE kind = 'weight' GROUP BY run_id, param
),
matrices AS (
    SELECT s.run_id, s.param
    FROM shapes s
    LEFT JOIN (SELECT run_id, module, any_value(module_type) AS module_type
               FROM modules GROUP BY run_id, module) m
      ON m.run_id = s.run_id AND m.module = s.module
    LEFT JOIN shapes b  -- the bias beside a weight (weight_ih_l0 -> bias_ih_l0)
      ON b.run_id = s.run_id AND b.module = s.module
     AND b.leaf = replace(s.leaf, 'weight', 'bias')
    WHERE s.leaf LIKE '%weight%'
      AND coalesce(m.module_type, '') NOT LIKE '%Norm%'
      AND (b.numel IS NULL OR b.numel <> s.numel)
),
-- Warm-up by steps, not by samples: the collector samples the first steps densely
-- (and bursts after a loss jump), so the first tenth of the samples can be most of
-- them, and their early ratios would outvote the rest of the run.
peak_lr AS (  -- the first step at which each learning rate reaches its peak
    SELECT run_id, max(peak_step) AS peak_step FROM (
        SELECT run_id, name, min(step) FILTER (WHERE value >= 0.99 * top) AS peak_step
        FROM (SELECT *, max(value) OVER (PARTITION BY run_id, name) AS top FROM scalars
              WHERE name LIKE 'lr%' AND split = 'train' AND isfinite(value))
        GROUP BY run_id, name)
    GROUP BY run_id
),
warm AS (
    SELECT p.run_id,
           greatest(floor(max(p.step) * $warmup_frac),
                    least(coalesce(any_value(l.peak_step), 0), floor(max(p.step) * $warmup_cap)))
               AS until_step
    FROM pairs p LEFT JOIN peak_lr l USING (run_id)
    GROUP BY p.run_id
),
per_param AS (  -- grouped before the matrices are picked: they join one row per parameter
    SELECT a.*
    FROM (SELECT p.run_id, p.param, median(p.ratio) AS ratio, count(*) AS samples,
                 min(p.step) AS from_step, max(p.step) AS to_step, min(p.seq) AS seq,
                 any_value(w.until_step) AS warmup_until
          FROM pairs p JOIN warm w USING (run_id)
          WHERE p.step > w.until_step
          GROUP BY p.run_id, p.param
          HAVING count(*) >= $min_samples) a
    JOIN matrices m ON m.run_id = a.run_id AND m.param = a.param
),
judged AS (
    SELECT *,
           CASE WHEN ratio > $high THEN 'high' WHEN ratio < $low THEN 'low' END AS side,
           count(*) OVER (PARTITION BY run_id) AS params,
           median(ratio) OVER (PARTITION BY run_id) AS run_median
    FROM per_param
),
offenders AS (
    SELECT *,
           -- the worst offender first: the largest ratio when too high, the smallest when too low
           row_number() OVER (PARTITION BY run_id, side
                              ORDER BY CASE side WHEN 'high' THEN -ratio ELSE ratio END, seq) AS rank_in_side
    FROM judged
    WHERE side IS NOT NULL
)
SELECT run_id,
       arg_min(param, rank_in_side) AS subject,
       arg_min(from_step, rank_in_side) AS step,
       printf('%s: the update/weight ratio ||dw||/||w|| of %s is %.2g (median over %d sampled steps after warm-up, from step %d), %s the healthy band [%g, %g] around 1e-3; %d of %d weight matrices are %s it (median of all %.2g)',
              CASE side WHEN 'high' THEN 'too high: weights update too fast'
                        ELSE 'too low: stalled learning' END,
              arg_min(param, rank_in_side), arg_min(ratio, rank_in_side),
              arg_min(samples, rank_in_side), arg_min(from_step, rank_in_side),
              CASE side WHEN 'high' THEN 'above' ELSE 'below' END, $low, $high,
              count(*), any_value(params), CASE side WHEN 'high' THEN 'above' ELSE 'below' END,
              any_value(run_median)) AS message,
       json_object(
           'direction', side, 'param', arg_min(param, rank_in_side),
           'median_ratio', arg_min(ratio, rank_in_side),
           'offenders', to_json(list(json_object('param', param, 'median_ratio', ratio,
                                                 'samples', samples) ORDER BY rank_in_side)),
           'offending_params', count(*), 'matrices', any_value(params),
           'run_median_ratio', any_value(run_median),
           'warmup_until_step', any_value(warmup_until),
           'low', $low, 'high', $high, 'warmup_frac', $warmup_frac
       )::VARCHAR AS evidence
FROM offenders
GROUP BY run_id, side
