"""Which way a metric improves: its goal, ``"min"`` (a loss) or ``"max"`` (an accuracy).

A run states it with ``tel.define_metric(name, goal=...)``, stored as a
``metric_defined`` event (payload ``{"name", "goal"}``); the latest one for a name
wins. Without one, the words of the name decide (``default_goal``): ``bpc``,
``val_loss`` and ``top1_error`` fall, ``acc`` and ``f1_macro`` rise; a name with no
such word (``lr``, ``grad_norm``) has no goal, and nothing calls its extremes "best".
Every reader uses one goal per run and metric: the ``metric_goals`` view
(``analysis``), ``telemetry runs``' best columns, the report's best values and run
comparison, and the rules, which leave a run "not evaluated" rather than read its
metric against the goal it defined.
"""

from __future__ import annotations

import re

GOALS = ("min", "max")

MIN_WORDS = frozenset(
    {
        "loss",
        "nll",
        "ppl",
        "perplexity",
        "bpc",
        "bpb",
        "mse",
        "rmse",
        "mae",
        "mape",
        "error",
        "err",
        "wer",
        "cer",
    }
)
"""Words of a metric name that make it fall as the model improves."""

MAX_WORDS = frozenset(
    {
        "acc",
        "accuracy",
        "f1",
        "auc",
        "auroc",
        "r2",
        "precision",
        "recall",
        "iou",
        "map",
        "bleu",
        "rouge",
    }
)
"""Words of a metric name that make it rise as the model improves."""

_WORD = re.compile(r"[^a-z0-9]+")


def words(name: str) -> list[str]:
    """The lower-case words of a metric name (split at anything not a letter or digit)."""
    return [w for w in _WORD.split(name.lower()) if w]


def default_goal(name: str) -> str | None:
    """``"min"``, ``"max"`` or None, from the words of ``name`` (a MIN word wins:
    ``loss_acc_weighted`` is a loss)."""
    found = set(words(name))
    if found & MIN_WORDS:
        return "min"
    if found & MAX_WORDS:
        return "max"
    return None


def default_goal_sql(column: str, *, dialect: str = "duckdb") -> str:
    """An SQL expression equal to ``default_goal`` of the text ``column``: DuckDB's, or
    Spark's (``dialect="spark"``: the Spark views, ``analysis.spark.views``)."""
    lows = ", ".join(f"'{w}'" for w in sorted(MIN_WORDS))
    highs = ", ".join(f"'{w}'" for w in sorted(MAX_WORDS))
    if dialect == "spark":
        words = f"split(lower({column}), '[^a-z0-9]+')"

        def has(listed: str) -> str:
            return f"arrays_overlap({words}, array({listed}))"

    elif dialect == "duckdb":
        words = f"regexp_split_to_array(lower({column}), '[^a-z0-9]+')"

        def has(listed: str) -> str:
            return f"len(list_intersect({words}, [{listed}])) > 0"

    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}; dialects: duckdb, spark")
    return f"CASE WHEN {has(lows)} THEN 'min' WHEN {has(highs)} THEN 'max' END"
