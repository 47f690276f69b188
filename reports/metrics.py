"""Which metrics of a run get curves, when it logged more than a page can draw.

A run may log a thousand scalars (per-class accuracies, per-layer statistics); a
page draws ``reports.budget.Budget.metric_charts`` of them and names the rest. The
ones a reader needs come first: those a finding names (its evidence must be on the
page), then the usual ones (loss, accuracy), then names that look like a loss or an
accuracy, then metrics logged on several splits (train and val: where overfitting
shows), then the rest by name. The drawn ones keep the page's order: loss, acc,
accuracy, then alphabetical.

Pure Python, no I/O: ``reports.data`` reads the names and the curves of the chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PREFERRED = ("loss", "acc", "accuracy")
"""Drawn first, in this order; other metrics follow alphabetically."""

LIKE = re.compile(r"loss|acc|err|f1|auc|precision|recall|perplexity|ppl", re.IGNORECASE)
"""Names that read as a training objective or a quality measure."""

LISTED = 20
"""Left-out metrics named on the page; the rest are counted."""


@dataclass(frozen=True)
class Choice:
    """The metrics drawn (in page order), and those left out (most relevant first)."""

    drawn: list[str]
    left_out: list[str]

    def note(self, run_id: str) -> str | None:
        """The sentence under the run's curves when some were left out, else None."""
        if not self.left_out:
            return None
        total = len(self.drawn) + len(self.left_out)
        listed = ", ".join(self.left_out[:LISTED])
        more = len(self.left_out) - LISTED
        if more > 0:
            listed += f", … and {more:,} more"
        query = (
            f"SELECT step, split, value FROM scalars WHERE run_id = {_sql(run_id)} "
            f"AND name = {_sql(self.left_out[0])}"
        )
        return (
            f"Curves for {len(self.drawn)} of {total:,} metrics (those findings name, then "
            "loss- and accuracy-like names, then those logged on several splits); "
            f'left out: {listed}. Read one with telemetry query ROOT "{query}".'
        )


def choose(splits: Mapping[str, int], *, limit: int, named: Iterable[str] = ()) -> Choice:
    """At most ``limit`` of the metrics in ``splits`` (name -> how many splits it was logged on).

    ``named``: metrics a finding of the run names; they are drawn first.
    """
    wanted = set(named)

    def rank(name: str) -> tuple[int, int, int, int, str]:
        preferred = PREFERRED.index(name) if name in PREFERRED else len(PREFERRED)
        like = 0 if LIKE.search(name) else 1
        several = 0 if splits[name] > 1 else 1
        return (name not in wanted, preferred, like, several, name)

    ranked = sorted(splits, key=rank)
    return Choice(order(ranked[:limit]), ranked[limit:])


def order(names: Sequence[str]) -> list[str]:
    """The page's order: the preferred metrics first, then alphabetical."""
    first = [m for m in PREFERRED if m in names]
    return first + sorted(m for m in names if m not in PREFERRED)


def named_by(subjects: Iterable[str | None], names: Iterable[str]) -> set[str]:
    """The metrics among ``names`` that finding subjects name (``loss/val``, ``acc``).

    A metric's own name may hold a slash (``train/loss``), so a subject names a metric
    when it is the name or starts with the name and a slash.
    """
    known = set(names)
    out: set[str] = set()
    for subject in subjects:
        if not subject:
            continue
        parts = subject.split("/")
        out.update(n for i in range(len(parts), 0, -1) if (n := "/".join(parts[:i])) in known)
    return out


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
