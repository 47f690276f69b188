-- rule: chance_level
-- severity: error
-- title: Chance level
-- requires: modules, scalars:$metric/train>=10 | scalars:$metric/val>=3
-- param: metric = 'loss'
-- param: acc_metric = 'acc'
-- param: tolerance = 0.05
-- param: acc_margin = 0.1
-- param: min_steps = 50
-- seed: part 6 §1 (check the data: inputs and labels loaded and matched correctly), part 1 §3 (the loss does not fall), part 6 §4 (learning rate)
-- suggestion: Check that the labels match the inputs (a label array shuffled or sorted apart from the inputs, a wrong column, an augmentation applied to the images but not the masks), that the model is connected to the loss (outputs detached, a frozen or never-optimised model, the optimizer built over other parameters), and that the learning rate is not too low.
-- null: a classifier starts near ln(C) (C output classes: uniform predictions) and a healthy one leaves it within its first epochs: every healthy run of the corpus ends far below ln(C) on either half (tests/corpus), its accuracy far above 1/C
-- false_alarms: none of the corpus's healthy runs on either half; a run never better than chance for its whole length is broken by construction (the rule judges the whole curve, not a slow start)
-- C is the last dimension of the model's output (the `modules` row of the model itself:
-- [batch, C] for a classifier, [batch, T, C] for a language model); a model with one
-- output (a regression) is not judged. The curve judged is the validation loss when the
-- run has at least 3 evaluations, else the training loss (one point per step, ranks
-- averaged), smoothed by a running median of 3 points (macro smooth3). The run is at
-- chance level when, over the whole curve, the smoothed loss never went below
-- (1 - `tolerance`) * ln(C) and the median of its second half sits within `tolerance` of
-- ln(C): the model predicts the class prior and nothing else. When the run logs an
-- accuracy (`acc_metric`, the same split), its smoothed best must also stay within
-- `acc_margin` of 1/C (a model that learned something about a skewed label prior moves
-- its loss below ln(C); this rule is about none). A run is judged once its curve reaches
-- step `min_steps` (50): a model not yet better than chance after a dozen steps is only
-- young. One finding per run. Something else
-- often explains it (vanishing gradients, a learning rate too high, a zero
-- initialisation): analysis/causes.py links it; with no such cause, the labels and the
-- wiring of the model are the first suspects.
WITH classes AS (
    SELECT run_id, try_cast(json_extract(output_shape, '$[#-1]') AS BIGINT) AS classes
    FROM modules
    WHERE module = ''
),
split_used AS (
    SELECT run_id,
           CASE WHEN count(DISTINCT step) FILTER (WHERE split = 'val') >= 3 THEN 'val'
                ELSE 'train' END AS split
    FROM scalars
    WHERE name = $metric AND split IN ('train', 'val')
    GROUP BY run_id
),
points AS (
    SELECT s.run_id, s.name, s.step, avg(s.value) AS value
    FROM scalars s JOIN split_used u ON u.run_id = s.run_id AND u.split = s.split
    WHERE s.name IN ($metric, $acc_metric) AND isfinite(s.value)
    GROUP BY s.run_id, s.name, s.step
),
curves AS (
    SELECT run_id, name, step, value,
           smooth3(value, run_id || name, step) AS level,
           row_number() OVER (PARTITION BY run_id, name ORDER BY step) AS i,
           count(*) OVER (PARTITION BY run_id, name) AS n
    FROM points
),
judged AS (
    SELECT c.run_id, k.classes, ln(k.classes) AS chance,
           min(c.level) FILTER (WHERE c.name = $metric) AS lowest,
           median(c.level) FILTER (WHERE c.name = $metric AND c.i > c.n / 2) AS late,
           max(c.level) FILTER (WHERE c.name = $acc_metric) AS best_acc,
           count(*) FILTER (WHERE c.name = $metric) AS points,
           min(c.step) FILTER (WHERE c.name = $metric) AS first_step,
           max(c.step) FILTER (WHERE c.name = $metric) AS last_step
    FROM curves c JOIN classes k USING (run_id)
    WHERE k.classes >= 2
    GROUP BY c.run_id, k.classes
)
SELECT j.run_id,
       $metric || '/' || u.split AS subject,
       j.first_step AS step,
       printf('the model is at chance level: the %s %s sits at %.3f, ln(%d) = %.3f for %d output classes (uniform predictions), and never went below %.3f over steps %d-%d%s; it learned nothing from the inputs',
              u.split, $metric, j.late, j.classes, j.chance, j.classes, j.lowest,
              j.first_step, j.last_step,
              CASE WHEN j.best_acc IS NOT NULL
                   THEN printf('; %s %s at best %.1f%% against %.1f%% for a random guess',
                               u.split, $acc_metric, 100 * j.best_acc, 100.0 / j.classes)
                   ELSE '' END) AS message,
       json_object(
           'classes', j.classes, 'chance_loss', j.chance, 'late_loss', j.late,
           'lowest_loss', j.lowest, 'best_acc', j.best_acc, 'chance_acc', 1.0 / j.classes,
           'split', u.split, 'points', j.points,
           'tolerance', $tolerance, 'acc_margin', $acc_margin, 'min_steps', $min_steps
       )::VARCHAR AS evidence
FROM judged j JOIN split_used u USING (run_id)
WHERE j.lowest >= (1 - $tolerance) * j.chance
  AND abs(j.late - j.chance) <= $tolerance * j.chance
  AND (j.best_acc IS NULL OR j.best_acc <= 1.0 / j.classes + $acc_margin)
  AND j.last_step >= $min_steps
