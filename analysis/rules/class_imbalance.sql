-- rule: class_imbalance
-- severity: warning
-- title: Imbalanced classes
-- requires: predictions:true_class
-- param: ratio = 10.0
-- param: min_examples = 100
-- param: recall_gap = 0.2
-- param: z = 3.0
-- param: max_classes = 50
-- param: min_rare = 10
-- seed: part 6 (common problems: imbalanced classes: weight the loss, over- or under-sample)
-- suggestion: Give the rare classes their weight: a weighted loss (nn.CrossEntropyLoss(weight=...) with weights inversely proportional to each class's frequency, or pos_weight for BCEWithLogitsLoss), or a balanced sampler (torch.utils.data.WeightedRandomSampler with per-example weights 1 / count of its class); judge the model on per-class recall, balanced accuracy or macro-F1, not accuracy, which a model ignoring the rare classes keeps high.
-- null: a healthy run's training labels (log_predictions on training batches; else the evaluated split's labels) hold every class within a factor of `ratio` (10) of the most frequent one, or, where they do not, the rare classes are recognised about as well as the others: at the latest evaluation the rare classes' recall is within `recall_gap` (0.2) of the others' or the difference is within `z` (3) standard errors of a two-proportion test (a few rare examples make a noisy recall; under `min_rare` (10) of them, not judged)
-- false_alarms: none of the labelled corpus's healthy runs (digits, wine, iris, breast cancer: classes at most 1.7x apart; the long-tailed digits, 10:1, whose rare digits are recalled as well as the others); label sets of more than `max_classes` (50) are a vocabulary, not classes to rebalance: the corpus's character-level GRU, LSTM and transformer (88 characters, Zipf-distributed, some never in training) drew this warning before they were left out; reported on purpose: a skewed dataset the model already handles is not reported (the recall condition), a skewed one it handles badly is, even when the skew is the world's
-- Per run: the label counts per class, from the `train` split's confusion cells (all
-- steps summed) or, without one, from the split judged below; classes are those any
-- split's labels hold (a class missing from training counts 0). Rare classes: count *
-- `ratio` <= the largest count. Judged at the latest step of the evaluated split
-- ('val', 'valid', 'validation', 'eval' or 'dev' first, then any split but 'train',
-- then 'train'): the recall of the rare classes together against that of the others,
-- over at least `min_rare` (10) rare examples there (fewer: a recall too noisy to judge). Runs whose labels hold more than
-- `max_classes` classes (a language model's vocabulary) are not judged.
WITH cells AS (
    SELECT run_id, split, step, true_class, predicted_class, count FROM confusion
),
judged_split AS (
    SELECT run_id,
           first(split ORDER BY CASE WHEN split IN ('val', 'valid', 'validation', 'eval', 'dev') THEN 0
                                WHEN split <> 'train' THEN 1 ELSE 2 END, split) AS split
    FROM cells GROUP BY run_id
),
latest AS (
    SELECT c.run_id, c.split, max(c.step) AS step
    FROM cells c JOIN judged_split j ON j.run_id = c.run_id AND j.split = c.split
    GROUP BY c.run_id, c.split
),
label_split AS (
    SELECT j.run_id, coalesce(max(c.split) FILTER (WHERE c.split = 'train'), j.split) AS split
    FROM judged_split j JOIN cells c ON c.run_id = j.run_id
    GROUP BY j.run_id, j.split
),
classes AS (
    SELECT DISTINCT run_id, true_class FROM cells
),
labels AS (
    SELECT k.run_id, k.true_class, coalesce(sum(c.count), 0) AS n
    FROM classes k
    JOIN label_split l ON l.run_id = k.run_id
    LEFT JOIN cells c ON c.run_id = k.run_id AND c.split = l.split AND c.true_class = k.true_class
    GROUP BY k.run_id, k.true_class
),
skew AS (
    SELECT run_id, sum(n) AS total, max(n) AS most, min(n) AS least,
           first(true_class ORDER BY n DESC, true_class) AS common_class,
           first(true_class ORDER BY n, true_class) AS rare_class,
           count(*) AS n_classes
    FROM labels GROUP BY run_id
),
rare AS (
    SELECT l.run_id, l.true_class, l.n * $ratio <= s.most AS is_rare
    FROM labels l JOIN skew s USING (run_id)
),
recall AS (
    SELECT c.run_id, r.is_rare,
           sum(c.count) FILTER (WHERE c.true_class = c.predicted_class) AS hit,
           sum(c.count) AS n
    FROM cells c
    JOIN latest t ON t.run_id = c.run_id AND t.split = c.split AND t.step = c.step
    JOIN rare r ON r.run_id = c.run_id AND r.true_class = c.true_class
    GROUP BY c.run_id, r.is_rare
),
compared AS (
    SELECT s.*, t.split, t.step,
           coalesce(rr.hit, 0) / rr.n AS rare_recall, rr.n AS rare_n,
           coalesce(rc.hit, 0) / rc.n AS common_recall, rc.n AS common_n,
           (coalesce(rr.hit, 0) + coalesce(rc.hit, 0)) / (rr.n + rc.n) AS pooled,
           (SELECT list(true_class ORDER BY true_class) FROM rare x
            WHERE x.run_id = s.run_id AND x.is_rare)[1:10] AS rare_classes
    FROM skew s
    JOIN latest t USING (run_id)
    JOIN recall rr ON rr.run_id = s.run_id AND rr.is_rare
    JOIN recall rc ON rc.run_id = s.run_id AND NOT rc.is_rare
    WHERE s.total >= $min_examples AND s.least * $ratio <= s.most AND s.n_classes <= $max_classes
)
SELECT run_id, split AS subject, step,
       printf('the training labels are skewed %s: class %d labels %d of the examples logged, class %d %d; at step %d the rare classes (%d of %d) are recalled %.0f%% of the time on %s, the others %.0f%%',
              CASE WHEN least = 0 THEN 'without limit (a class never seen in training)'
                   ELSE printf('%.0f:1', most / least) END,
              common_class, most, rare_class, least, step, len(rare_classes), n_classes,
              100 * rare_recall, split, 100 * common_recall) AS message,
       json_object('ratio', CASE WHEN least > 0 THEN most / least END,
                   'most_common_class', common_class, 'most_common_count', most,
                   'rarest_class', rare_class, 'rarest_count', least,
                   'classes', n_classes, 'rare_classes', rare_classes,
                   'split', split, 'step', step,
                   'rare_recall', rare_recall, 'rare_examples', rare_n,
                   'common_recall', common_recall, 'common_examples', common_n)::VARCHAR AS evidence
FROM compared
WHERE common_recall - rare_recall >= $recall_gap - 1e-9
  AND rare_n >= $min_rare
  AND (pooled <= 0 OR pooled >= 1
       OR (common_recall - rare_recall)
          / sqrt(pooled * (1 - pooled) * (1.0 / rare_n + 1.0 / common_n)) >= $z)
