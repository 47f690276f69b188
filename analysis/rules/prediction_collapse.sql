-- rule: prediction_collapse
-- severity: warning
-- title: Predictions collapsed
-- requires: predictions:count
-- when: ended
-- param: share = 0.7
-- param: excess = 0.3
-- param: z = 4.0
-- param: min_examples = 30
-- param: flat = 0.1
-- seed: part 6 (common problems: the model predicts the same class for every input: dead units, a learning rate too high, imbalanced data; part 3 §2.4 dead ReLU)
-- suggestion: Find what makes the output ignore the input: dead ReLUs or saturated units (the activations section), a learning rate too high (lower it 3-10x, with warm-up), a class so frequent that predicting it is the cheapest loss (class weights or a balanced sampler), or inputs on raw scales (standardise them); then check the per-class recall in the report's confusion matrix, not the accuracy.
-- null: a trained classifier's predictions follow the labels: at the latest logged step of a split, the class it predicts most takes about the share that class has among the labels (the difference a binomial's noise: within `z` (4) standard errors, or under `excess` (0.3)), or it takes under `share` (0.7) of the predictions; a regression model's outputs vary with the targets: their standard deviation above `flat` (0.1) of the targets'; a split whose labels hold one class is not judged (predicting it is no collapse)
-- false_alarms: none of the labelled corpus's healthy runs; an untrained model's first evaluation often predicts one class, which is why only the latest step of a finished run is judged (when: ended); reported on purpose: a binary task on 60/40 labels with a model predicting the majority for 90 % of inputs
-- Per run and split, at the split's latest step with predictions (at least
-- `min_examples`): for classification the most predicted class, its share of the
-- predictions and of the labels; for regression (per output column) the outputs'
-- standard deviation against the targets'. A finding per split that collapsed.
WITH latest AS (
    SELECT run_id, split, max(step) AS step FROM predictions GROUP BY run_id, split
),
cells AS (
    SELECT c.* FROM confusion c JOIN latest l USING (run_id, split, step)
),
predicted AS (
    SELECT run_id, split, step, predicted_class, sum(count) AS n
    FROM cells GROUP BY run_id, split, step, predicted_class
),
labelled AS (
    SELECT run_id, split, true_class, sum(count) AS n FROM cells GROUP BY run_id, split, true_class
),
classified AS (
    SELECT p.run_id, p.split, p.step, sum(p.n) AS total,
           first(p.predicted_class ORDER BY p.n DESC, p.predicted_class) AS top_class, max(p.n) AS top_n,
           count(DISTINCT p.predicted_class) AS predicted_classes
    FROM predicted p GROUP BY p.run_id, p.split, p.step
),
judged AS (
    SELECT c.*, c.top_n / c.total AS top_share,
           coalesce(l.n, 0) / c.total AS label_share,
           (SELECT count(*) FROM labelled x WHERE x.run_id = c.run_id AND x.split = c.split) AS label_classes
    FROM classified c
    LEFT JOIN labelled l ON l.run_id = c.run_id AND l.split = c.split AND l.true_class = c.top_class
    WHERE c.total >= $min_examples
),
regression AS (
    SELECT r.run_id, r.split, r.step, r.index, r.count, r.target_std, r.output_std,
           r.output_mean, r.target_mean, r.r2
    FROM residuals r JOIN latest l USING (run_id, split, step)
    WHERE r.count >= $min_examples AND r.target_std > 0 AND r.output_std <= $flat * r.target_std
)
SELECT run_id, split AS subject, step,
       printf('at step %d the model predicts class %d for %.0f%% of the %s examples (%d of %d); %.0f%% of them have that label',
              step, top_class, 100 * top_share, split, top_n, total, 100 * label_share) AS message,
       json_object('kind', 'classification', 'split', split, 'step', step,
                   'predicted_class', top_class, 'predicted_share', top_share,
                   'label_share', label_share, 'examples', total,
                   'classes_predicted', predicted_classes, 'classes_labelled', label_classes)::VARCHAR AS evidence
FROM judged
WHERE label_classes >= 2
  AND top_share >= $share - 1e-9
  AND top_share - label_share >= $excess - 1e-9
  AND (label_share <= 0 OR label_share >= 1
       OR (top_share - label_share) / sqrt(label_share * (1 - label_share) / total) >= $z)
UNION ALL
SELECT run_id, split AS subject, step,
       printf('at step %d the model''s output %d barely varies on %s: std %.4g against the targets'' %.4g (mean %.4g; R^2 %.3f): it predicts about the same value for every input',
              step, index, split, output_std, target_std, output_mean, coalesce(r2, 'NaN'::DOUBLE)) AS message,
       json_object('kind', 'regression', 'split', split, 'step', step, 'index', index,
                   'output_std', output_std, 'target_std', target_std,
                   'output_mean', output_mean, 'target_mean', target_mean,
                   'r2', r2, 'examples', count)::VARCHAR AS evidence
FROM regression
QUALIFY row_number() OVER (PARTITION BY run_id, split ORDER BY output_std / target_std, index) = 1
