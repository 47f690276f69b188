-- rule: unnormalized_inputs
-- severity: warning
-- title: Inputs not normalized
-- requires: inputs
-- param: raw_max = 10.0
-- param: scale_ratio = 100.0
-- param: offset_sigmas = 10.0
-- seed: part 6 (common problems: the inputs are not standardised: normalise them; part 3 §2.2, exploding gradients from large inputs)
-- suggestion: Standardise the inputs with statistics of the training set: tabular features with sklearn's StandardScaler (fit on the training split only, then transform train, validation and test alike), images with transforms.ToTensor() (to [0, 1]) then transforms.Normalize(mean, std) per channel; the evidence gives each feature's measured mean and std to start from.
-- null: a model fed standardised features (mean ~0, std ~1 each) or images scaled to [0, 1] or normalised per channel has inputs whose features share a scale (their standard deviations within a factor of ~10), sit within a few standard deviations of zero, and images that stay within [-3, 3]; per feature (or channel) the rule takes the median over the sampled steps of each batch's mean and std, and the extremes of its min and max
-- false_alarms: none of the labelled corpus's 56 healthy runs (standardised tables, digits in [0, 1], embeddings, sine waves, token ids, which are integers and not recorded); a feature that is an on/off flag among standardised ones has a std within 3x of theirs; reported on purpose: one-hot or binary features beside a count of thousands (a scale ratio of 1000 is real)
-- What the model's first input looked like at its sampled training steps (the inputs
-- stream: per feature of a [batch, features] input, per channel of [batch, channels,
-- ...]). One finding per run, for the first of:
--   raw_pixels  an image-like input (channels) that never goes below 0 and reaches
--               `raw_max` (10): 0-255 (or 0-16) intensities, not [0, 1] or standardised
--   scales      features whose standard deviations differ by `scale_ratio` (100x) or
--               more (among those that vary at all)
--   offset      a feature whose mean is `offset_sigmas` (10) of its own standard
--               deviations and at least `raw_max` away from zero (a year, a price, an id)
WITH per_feature AS (
    SELECT run_id, layout, index,
           median(mean) AS mean, median(std) AS std,
           min(min) AS lo, max(max) AS hi, min(step) AS step
    FROM inputs
    GROUP BY run_id, layout, index
),
per_run AS (
    SELECT run_id,
           arg_max(layout, step) AS layout,
           count(*) AS features,
           min(step) AS step,
           min(lo) AS lo, max(hi) AS hi,
           max(std) FILTER (WHERE std > 0) AS std_hi,
           min(std) FILTER (WHERE std > 0) AS std_lo,
           arg_max(index, std) FILTER (WHERE std > 0) AS widest,
           arg_min(index, std) FILTER (WHERE std > 0) AS narrowest,
           max(abs(mean) / std) FILTER (WHERE std > 0 AND abs(mean) >= $raw_max) AS off_sigmas,
           arg_max(index, abs(mean) / std) FILTER (WHERE std > 0 AND abs(mean) >= $raw_max)
               AS offset_index,
           arg_max(mean, abs(mean) / std) FILTER (WHERE std > 0 AND abs(mean) >= $raw_max)
               AS offset_mean,
           list(round(mean, 4) ORDER BY index)[1:16] AS means,
           list(round(std, 4) ORDER BY index)[1:16] AS stds
    FROM per_feature
    GROUP BY run_id
),
judged AS (
    SELECT *,
           CASE
               WHEN layout = 'channels' AND lo >= 0 AND hi >= $raw_max THEN 'raw_pixels'
               WHEN layout = 'features' AND features > 1
                    AND std_hi / std_lo >= $scale_ratio THEN 'scales'
               WHEN layout = 'features' AND off_sigmas >= $offset_sigmas THEN 'offset'
           END AS reason
    FROM per_run
)
SELECT run_id, 'input' AS subject, step,
       CASE reason
           WHEN 'raw_pixels' THEN printf('the model''s input looks like raw intensities: values from %.4g to %.4g over %d channel(s), never negative (not scaled to [0, 1], not normalised)', lo, hi, features)
           WHEN 'scales' THEN printf('the model''s input features are on scales %.0fx apart: feature %d has std %.4g, feature %d std %.4g (%d features)', std_hi / std_lo, widest, std_hi, narrowest, std_lo, features)
           ELSE printf('input feature %d sits %.0f of its standard deviations from zero (mean %.4g): not centred', offset_index, off_sigmas, offset_mean)
       END AS message,
       json_object('reason', reason, 'layout', layout, 'features', features,
                   'min', lo, 'max', hi, 'std_ratio', std_hi / std_lo,
                   'widest_feature', widest, 'narrowest_feature', narrowest,
                   'offset_sigmas', off_sigmas, 'offset_feature', offset_index,
                   'means', means, 'stds', stds)::VARCHAR AS evidence
FROM judged
WHERE reason IS NOT NULL
