"""Name the bug, not the symptom (issue 16): a finding that another explains points to
its cause's fix instead of giving its own, the links chain from symptoms to the bugs
that make them and always end, and a rule's advice can depend on the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis import Finding, Severity, diagnose, open_store
from analysis.causes import LINKS, link
from analysis.rule import parse_rule
from tests.builders import RunBuilder

TITLES = {
    "dead_relu": "Dead ReLU units",
    "lr_too_high": "Learning rate too high",
    "missing_zero_grad": "Gradients never reset",
    "vanishing_gradients": "Vanishing gradients",
}


def _f(rule: str, *, subject: str | None = None, step: int | None = 10, **evidence: Any) -> Finding:
    return Finding(
        rule, Severity.WARNING, "r", subject, step, f"{rule} msg", f"fix {rule}", evidence
    )


def _by_rule(findings: list[Finding]) -> dict[str, Finding]:
    return {f.rule: f for f in findings}


def test_a_consequence_points_to_its_causes_fix_instead_of_its_own() -> None:
    dead = _f("dead_relu", subject="fc1.relu", step=30, reason="nearly_all_dead")
    vanishing = _f("vanishing_gradients", subject="fc0.weight", step=1)
    linked = _by_rule(link([vanishing, dead], titles=TITLES))
    assert linked["vanishing_gradients"].caused_by == "dead_relu:fc1.relu"
    assert linked["vanishing_gradients"].suggestion == (
        "Explained by Dead ReLU units (fc1.relu, step 30): fix that first. fix dead_relu"
    )
    assert linked["dead_relu"].suggestion == "fix dead_relu"  # a root keeps its own fix
    # without titles, the rule id names the cause
    (untitled, _) = link([vanishing, dead])
    assert untitled.suggestion.startswith("Explained by dead_relu (fc1.relu, step 30):")


def test_a_chain_of_causes_resolves_to_the_bug_at_its_end() -> None:
    forgot = _f("missing_zero_grad", step=2)
    too_high = _f("lr_too_high", step=5)
    vanishing = _f("vanishing_gradients", subject="fc0.weight", step=1)
    stalled = _f("stalled_parameters", subject="fc0.weight", step=1)
    titles = {**TITLES, "stalled_parameters": "Stalled parameters"}
    linked = _by_rule(link([stalled, vanishing, too_high, forgot], titles=titles))
    # each finding names its direct cause: the CLI and the report draw the tree from it
    assert linked["stalled_parameters"].caused_by == "vanishing_gradients:fc0.weight"
    assert linked["vanishing_gradients"].caused_by == "lr_too_high"
    assert linked["lr_too_high"].caused_by == "missing_zero_grad"
    assert linked["missing_zero_grad"].caused_by is None
    # and the fix given is the root's, whatever the chain's length
    assert linked["stalled_parameters"].suggestion == (
        "Explained by Vanishing gradients (fc0.weight, step 1), itself explained by Learning "
        "rate too high (step 5), itself explained by Gradients never reset (step 2): fix that "
        "first. fix missing_zero_grad"
    )
    assert linked["vanishing_gradients"].suggestion.endswith(
        "itself explained by Gradients never reset (step 2): fix that first. fix missing_zero_grad"
    )
    assert linked["missing_zero_grad"].suggestion == "fix missing_zero_grad"


def test_dead_units_are_blamed_on_the_bug_before_the_learning_rate() -> None:
    dead = _f("dead_relu", subject="fc1.relu", step=6, reason="nearly_all_dead")
    vanishing = _f("vanishing_gradients", subject="fc0.weight", step=1)
    linked = _by_rule(
        link([vanishing, dead, _f("lr_too_high", step=5), _f("missing_zero_grad", step=2)])
    )
    assert linked["vanishing_gradients"].caused_by == "dead_relu:fc1.relu"
    assert linked["dead_relu"].caused_by == "missing_zero_grad"
    assert linked["lr_too_high"].caused_by == "missing_zero_grad"
    assert linked["vanishing_gradients"].suggestion.endswith("fix missing_zero_grad")
    # units dead from the start were born dead (the initial weights or biases)
    born_dead = _f("dead_relu", subject="fc1.relu", step=1, reason="dead_from_start")
    alone = _by_rule(link([born_dead, _f("lr_too_high", step=5)]))
    assert alone["dead_relu"].caused_by is None
    assert alone["dead_relu"].suggestion == "fix dead_relu"


def test_vanishing_gradients_prefer_dead_units_then_the_learning_rate() -> None:
    vanishing = _f("vanishing_gradients", subject="fc0.weight", step=1)
    too_high = _f("lr_too_high", step=5)
    alone = _by_rule(link([vanishing, too_high]))
    assert alone["vanishing_gradients"].caused_by == "lr_too_high"
    dead = _f("dead_relu", subject="fc1.relu", step=6, reason="nearly_all_dead")
    both = _by_rule(link([vanishing, too_high, dead]))
    assert both["vanishing_gradients"].caused_by == "dead_relu:fc1.relu"


def test_the_bugs_of_issue_16_explain_the_symptoms_they_make() -> None:
    expected = {
        "missing_eval_mode": {"overfitting", "early_stopping", "accuracy_plateau"},
        "missing_zero_grad": {
            "exploding_gradients",
            "divergence",
            "loss_oscillation",
            "loss_not_decreasing",
            "loss_spike",
            "dead_relu",
            "update_ratio",
        },
        "lr_too_high": {
            "divergence",
            "loss_not_decreasing",
            "loss_oscillation",
            "underfitting",
            "dead_relu",
            "update_ratio",
            "exploding_gradients",
            "vanishing_gradients",
        },
        "chance_level": {
            "loss_not_decreasing",
            "underfitting",
            "accuracy_plateau",
            "early_stopping",
        },
    }
    for cause, consequences in expected.items():
        for consequence in consequences:
            # each alone in its run with its cause: the link holds on a plain pair
            linked = _by_rule(
                link([_f(consequence, step=20, reason="nearly_all_dead"), _f(cause, step=5)])
            )
            assert linked[consequence].caused_by == cause, (cause, consequence)
            assert linked[consequence].suggestion.endswith(f"fix that first. fix {cause}")


def test_a_bug_is_named_before_the_symptom_that_explains_the_same_finding() -> None:
    # a NaN explains a divergence, but a forgotten zero_grad explains both
    linked = _by_rule(
        link([_f("divergence", step=50), _f("nonfinite", step=40), _f("missing_zero_grad", step=2)])
    )
    assert linked["divergence"].caused_by == "missing_zero_grad"


def test_every_chain_of_declared_links_ends() -> None:
    edges: dict[str, set[str]] = {}
    for declared in LINKS:
        edges.setdefault(declared.consequence, set()).update(declared.causes)
    # Kahn's algorithm: a graph whose nodes can all be removed, roots first, has no cycle
    nodes = set(edges) | {c for causes in edges.values() for c in causes}
    remaining = {n: set(edges.get(n, ())) for n in nodes}
    while True:
        roots = [n for n, causes in remaining.items() if not causes]
        if not roots:
            break
        for root in roots:
            del remaining[root]
        for causes in remaining.values():
            causes.difference_update(roots)
    assert remaining == {}, f"cycle among {sorted(remaining)}"
    # the chain from symptoms to bugs the issue names is there
    assert "dead_relu" in edges["vanishing_gradients"]
    assert "lr_too_high" in edges["dead_relu"]
    assert "missing_zero_grad" in edges["lr_too_high"]


SUGGESTING = """\
-- rule: advice_demo
-- severity: warning
-- title: Advice demo
-- requires: scalars:loss/train
-- seed: part 1
-- suggestion: The header's general advice.
-- null: never
-- false_alarms: always
SELECT run_id, NULL AS subject, max(step) AS step, 'm' AS message, '{}' AS evidence,
       CASE WHEN run_id = 'special' THEN 'Advice for this run.' END AS suggestion
FROM scalars GROUP BY run_id
"""


def test_a_rule_query_can_give_the_suggestion_for_its_run(tmp_path: Path) -> None:
    for run_id in ("special", "plain"):
        RunBuilder(tmp_path, run_id).scalars("loss", "train", [1.0, 0.9]).finish().write()
    rule = parse_rule(SUGGESTING, filename="advice_demo.sql")
    found = diagnose(open_store(tmp_path), rules=[rule]).findings
    assert {f.run_id: f.suggestion for f in found} == {
        "special": "Advice for this run.",
        "plain": "The header's general advice.",  # a null suggestion falls back on it
    }
