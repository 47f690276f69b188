"""What the model predicted against the targets, shaped for the page.

``tel.log_predictions`` records confusion cells (classification) or mergeable error
sums (regression) per split and step; the views ``confusion`` and ``residuals`` add
them up. The page draws, per run:

* the confusion matrix of each split at its latest step (``val`` first: ``PREFERRED``;
  ``MAX_SPLITS`` at most), normalised per true class (a row reads as that class's
  recall; the counts are in the tooltip), the ``MAX_CLASSES`` most frequent true
  classes as rows and the same classes as columns, predictions of any class not drawn
  in an ``other`` column, so every row still adds up to its class's examples;
* the recall of each class over the steps of the first split logged at several steps,
  for the ``MAX_RECALL_LINES`` classes of its matrix with the lowest recall at the
  latest step (a collapse onto one class, a minority class never learnt);
* for regression, rmse, bias and r2 over steps for each split and the first
  ``MAX_OUTPUTS`` output columns.

Every cap is named by the sentence under its chart. Matrices are cut in the database,
series decimated there (``reports.decimate``): what is read is bounded by the budget,
not by the number of classes or steps. ``read`` runs the queries; nothing is drawn here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from reports.budget import Budget
from reports.decimate import Decimated, decimate_sql, decimated
from reports.queries import query
from reports.series import Series, points_per_line, shaped

if TYPE_CHECKING:
    from analysis import Store

PREFERRED = ("val", "validation", "valid", "eval", "test", "train")
"""Splits drawn first, in this order; others follow by name."""

MAX_SPLITS = 3
"""Confusion matrices (and regression splits) drawn per run."""

MAX_CLASSES = 30
"""Rows (true classes) of a confusion matrix at most; fewer when the run's share of the
page's heatmap cells (``Budget.cells``) holds fewer (a matrix of k rows has k x (k + 1))."""

MAX_RECALL_LINES = 10
"""Classes with a recall line: more is a tangle."""

MAX_OUTPUTS = 4
"""Regression output columns drawn per split (the collector records up to 64)."""

QUANTITIES = ("rmse", "bias", "r2")
"""The regression errors drawn (``residuals.sql``), one panel each."""

OTHER = "other"
"""The column of predictions of classes the matrix does not draw."""

_SPLITS = query("prediction_splits")
_CONFUSION = query("confusion_latest")
_RECALL = query("class_recall")
_RESIDUALS = query("residuals")


@dataclass(frozen=True)
class Matrix:
    """One split's confusion matrix at one step, cut to its most frequent classes."""

    split: str
    step: int
    cells: pl.DataFrame
    """true, predicted (class ids as text, and ``OTHER``), count, share (of the true
    class's examples), support (the true class's examples)."""
    per_class: pl.DataFrame
    """true (text), support (the class's examples), recall: one row per drawn class, by id."""
    total_classes: int
    """True classes at that step (``len(classes)`` is smaller when some were left out)."""
    examples: int
    hits: int
    """Examples predicted as their own class, over every class."""
    left_out_examples: int
    """Examples of the true classes not drawn."""

    @property
    def classes(self) -> list[str]:
        """The true classes drawn, by class id (rows and columns in this order)."""
        return [str(c) for c in self.per_class["true"].to_list()]

    @property
    def accuracy(self) -> float:
        return self.hits / self.examples if self.examples else math.nan

    @property
    def note(self) -> str | None:
        if len(self.classes) >= self.total_classes:
            return None
        return (
            f"The {len(self.classes):,} most frequent of {self.total_classes:,} true classes "
            f"are drawn ({self.left_out_examples:,} of {self.examples:,} examples belong to "
            f"the {self.total_classes - len(self.classes):,} left out); predictions of classes "
            f"not drawn are the “{OTHER}” column."
        )


@dataclass(frozen=True)
class Recall:
    """Per-class recall over the steps of one split."""

    split: str
    series: Series
    """class, step, recall."""


@dataclass(frozen=True)
class Residuals:
    """Regression errors over steps: a line per split (and output column)."""

    series: Series
    """quantity (rmse, bias, r2), line, step, value."""
    lines: list[str]
    """The lines drawn, in order."""


@dataclass(frozen=True)
class Predictions:
    matrices: list[Matrix]
    recall: Recall | None
    residuals: Residuals | None
    left_out: list[str]
    """Splits with a confusion matrix not drawn (beyond ``MAX_SPLITS``)."""

    @property
    def note(self) -> str | None:
        if not self.left_out:
            return None
        return f"Confusion matrices not drawn for splits: {', '.join(self.left_out)}."


def ordered(splits: Sequence[str]) -> list[str]:
    """``splits`` in drawing order: ``PREFERRED`` first, the others by name."""
    rank = {s: i for i, s in enumerate(PREFERRED)}
    return sorted(splits, key=lambda s: (rank.get(s, len(rank)), s))


def read(store: Store, run_id: str, budget: Budget) -> Predictions | None:
    """The run's predictions, or None when it logged none."""
    run = {"run_id": run_id}
    splits = store.sql(_SPLITS, run)
    if not splits.height:
        return None
    confusion = splits.filter(pl.col("kind") == "confusion")
    steps = {s: (int(step), int(n)) for _, s, step, n, _ in confusion.iter_rows()}
    names = ordered(list(steps))
    drawn = names[:MAX_SPLITS]
    matrices: list[Matrix] = []
    if drawn:
        cells = store.sql(
            _CONFUSION,
            run
            | {
                "splits": drawn,
                "steps": [steps[s][0] for s in drawn],
                "max_classes": min(MAX_CLASSES, max(2, math.isqrt(budget.cells))),
            },
        )
        matrices = [matrix(cells.filter(pl.col("split") == s)) for s in drawn]
    several = next((m for m in matrices if steps[m.split][1] > 1), None)
    regression = splits.filter(pl.col("kind") == "residuals")
    return Predictions(
        matrices,
        _recall(store, run_id, several, budget) if several else None,
        _residuals(store, run_id, regression, budget) if regression.height else None,
        names[MAX_SPLITS:],
    )


def matrix(rows: pl.DataFrame) -> Matrix:
    """``rows``: one split's cells as ``confusion_latest.sql`` returns them."""
    first = rows.row(0, named=True)
    label = pl.col("true_class").cast(pl.String)
    cells = rows.select(
        label.alias("true"),
        pl.col("predicted_class").cast(pl.String).fill_null(OTHER).alias("predicted"),
        "count",
        (pl.col("count") / pl.col("support")).round_sig_figs(4).alias("share"),
        "support",
    )
    per_class = (
        rows.group_by("true_class")
        .agg(pl.col("support").first(), pl.col("hits").first())
        .sort("true_class")
    )
    return Matrix(
        split=str(first["split"]),
        step=int(first["step"]),
        cells=cells,
        per_class=per_class.select(
            label.alias("true"),
            "support",
            (pl.col("hits") / pl.col("support")).round_sig_figs(4).alias("recall"),
        ),
        total_classes=int(first["classes"]),
        examples=int(first["examples"]),
        hits=int(first["all_hits"]),
        left_out_examples=int(first["examples"]) - int(per_class["support"].sum()),
    )


def _recall(store: Store, run_id: str, m: Matrix, budget: Budget) -> Recall:
    """Recall over steps of the classes of ``m`` with the lowest recall in it."""
    ranked = sorted(m.per_class.iter_rows(), key=lambda r: (r[2], int(r[0])))
    lines = min(MAX_RECALL_LINES, budget.lines)
    chosen = [int(c) for c, _, _ in ranked[:lines]]
    sql, params = decimate_sql(
        _RECALL,
        x="step",
        y="recall",
        by=["true_class"],
        max_points=points_per_line(
            len(chosen), max_points=budget.series, budget=budget.line_points
        ),
        max_nonfinite=budget.markers,
    )
    rows = store.sql(sql, params | {"run_id": run_id, "split": m.split, "classes": chosen})
    kept = decimated(rows, by=["true_class"], columns=["true_class", "step", "recall"])
    kept = Decimated(kept.frame.rename({"true_class": "class"}), kept.total, kept.cut)
    return Recall(
        m.split,
        shaped(
            kept,
            value="recall",
            lines=len(chosen),
            lines_total=len(m.classes),
            line_kind="classes of the matrix (those with the lowest recall at its step)",
            max_markers=budget.markers,
        ),
    )


def _residuals(store: Store, run_id: str, splits: pl.DataFrame, budget: Budget) -> Residuals:
    """rmse, bias and r2 over steps of the first splits and output columns."""
    outputs = {str(s): int(n or 1) for s, n in splits.select("split", "outputs").iter_rows()}
    drawn = ordered(list(outputs))[:MAX_SPLITS]
    per_split = min(MAX_OUTPUTS, max(1, budget.lines // max(1, len(drawn))))
    total = sum(outputs.values())
    n_lines = sum(min(per_split, outputs[s]) for s in drawn)
    sql, params = decimate_sql(
        _RESIDUALS,
        x="step",
        y="value",
        by=["quantity", "split", "index"],
        # Three panels of n_lines each share the chart's points.
        max_points=points_per_line(
            len(QUANTITIES) * n_lines, max_points=budget.series, budget=budget.line_points
        ),
        max_nonfinite=budget.markers,
    )
    rows = store.sql(sql, params | {"run_id": run_id, "splits": drawn, "max_outputs": per_split})
    single = all(outputs[s] == 1 for s in drawn)
    line = (
        pl.col("split") if single else pl.format("{} · output {}", pl.col("split"), pl.col("index"))
    ).alias("line")
    frame = rows.with_columns(line)
    kept = decimated(
        frame, by=["quantity", "split", "index"], columns=["quantity", "line", "step", "value"]
    )
    order = frame.sort(
        pl.col("split").replace_strict({s: i for i, s in enumerate(drawn)}, default=len(drawn)),
        "index",
    )["line"].unique(maintain_order=True)
    return Residuals(
        shaped(
            kept,
            value="value",
            lines=n_lines,
            lines_total=total,
            line_kind="splits and output columns",
            max_markers=budget.markers,
        ),
        [str(x) for x in order.to_list()],
    )
