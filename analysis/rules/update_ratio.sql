-- rule: update_ratio
-- severity: warning
-- title: Update/weight ratio out of band
-- requires: tensors:update>=10, tensors:weight>=10
-- param: low = 1e-5
-- param: high = 0.1
-- param: warmup_frac = 0.1
-- param: min_samples = 5
-- seed: part 2 §5 (weights update too fast: learning-rate decay or a smoother optimizer such as Adam), part 2 §1 (parameters updating too fast), part 3 §2.1 (some layers' weights barely change), part 6 §4.1 (learning rate too large or too small)
-- suggestion: Too high: lower the learning rate, decay it (StepLR, ReduceLROnPlateau) or add warm-up, or use a smoother optimizer such as Adam. Too low: raise the learning rate and check that gradients reach these layers (see vanishing_gradients); a healthy ||update||/||weight|| is around 1e-3 per step.
-- ||update|| / ||weight|| per parameter and sampled step (update: the change one
-- optimizer step made; weight: the value after it). Karpathy's rule of thumb (CS231n,
-- "ratio of weights:updates") puts a healthy ratio around 1e-3: much lower, the learning
-- rate is too low; much higher, too high. The band is two orders of magnitude either
-- side, [low, high] = [1e-5, 1e-1]: Adam moves each element by about lr, so ordinary
-- settings land at 1e-3..1e-2 (the demo's healthy Adam CNN: 2e-3..9e-3), while above
-- 0.1 a tenth of the weight is replaced every step and below 1e-5 it would take 1e5
-- steps to change by its own size. (SageMaker Debugger's WeightUpdateRatio flags only
-- catastrophes, < 1e-8 or > 10.) A parameter is out of band when its median ratio over
-- the sampled steps after the first warmup_frac of the run's steps (zero-initialised biases and
-- learning-rate warm-up make early ratios meaningless) is outside it, over at least
-- min_samples steps. Updates of exactly zero are `stalled_parameters`' finding and are
-- left out, as are zero weights and non-finite values.
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
-- Warm-up by steps, not by samples: the collector samples the first steps densely
-- (and bursts after a loss jump), so the first tenth of the samples can be most of
-- them, and their early ratios would outvote the rest of the run.
warm AS (
    SELECT run_id, floor(max(step) * $warmup_frac) AS until_step FROM pairs GROUP BY run_id
),
per_param AS (
    SELECT p.run_id, p.param, median(p.ratio) AS ratio, count(*) AS samples,
           min(p.step) AS from_step, max(p.step) AS to_step, min(p.seq) AS seq
    FROM pairs p JOIN warm w USING (run_id)
    WHERE p.step > w.until_step
    GROUP BY p.run_id, p.param
    HAVING count(*) >= $min_samples
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
       printf('%s: the update/weight ratio ||dw||/||w|| of %s is %.2g (median over %d sampled steps after warm-up), %s the healthy band [%g, %g] around 1e-3; %d of %d parameters are %s it (run median %.2g)',
              CASE side WHEN 'high' THEN 'too high: weights update too fast'
                        ELSE 'too low: stalled learning' END,
              arg_min(param, rank_in_side), arg_min(ratio, rank_in_side),
              arg_min(samples, rank_in_side),
              CASE side WHEN 'high' THEN 'above' ELSE 'below' END, $low, $high,
              count(*), any_value(params), CASE side WHEN 'high' THEN 'above' ELSE 'below' END,
              any_value(run_median)) AS message,
       json_object(
           'direction', side, 'param', arg_min(param, rank_in_side),
           'median_ratio', arg_min(ratio, rank_in_side),
           'offenders', to_json(list(json_object('param', param, 'median_ratio', ratio,
                                                 'samples', samples) ORDER BY rank_in_side)),
           'offending_params', count(*), 'params', any_value(params),
           'run_median_ratio', any_value(run_median),
           'low', $low, 'high', $high, 'warmup_frac', $warmup_frac
       )::VARCHAR AS evidence
FROM offenders
GROUP BY run_id, side
