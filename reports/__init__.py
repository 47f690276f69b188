"""reports: one self-contained HTML report of a store's runs. Never imports torch.

The report is a single static file (Vega, Vega-Lite and Vega-Embed inlined) that
opens from ``file://`` with the network off: findings first (each linked to the
chart that shows its evidence), then the runs, their training curves, predictions
(confusion matrices, per-class recall, regression errors), gradients, weights and
updates, the model summary, the model's inputs per feature, activation statistics,
feature maps and filters, where the first NaN/Inf appeared, step timing and peak
memory, export benchmarks, what mattered (the hyperparameters ranked by how much of the
best validation metric they explain: ``analysis.sweep``), and a comparison of every
run's hyperparameters with its best validation metric.
Everything a run wrote is escaped, and reaches a chart only as a data value. The page
has a budget of charts, lines, points and pixels (``reports.budget``) and names what
it left out.

``import reports`` stays light: the entry points below import the page machinery
(DuckDB via analysis, Polars, Jinja2; Altair, ~0.5 s, only when there are charts)
on first call.

Example::

    from analysis import diagnose, open_store
    from reports import write_report

    store = open_store("runs")
    write_report(store, diagnose(store), "report.html", title="nightly")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reports.defaults import MAX_RUNS

if TYPE_CHECKING:
    from analysis import Diagnosis, Store

__all__ = ["render_report", "write_report"]


def render_report(
    store: Store,
    diagnosis: Diagnosis,
    *,
    title: str | None = None,
    max_runs: int | None = MAX_RUNS,
) -> str:
    """The report as HTML text, for the runs of ``diagnosis`` (see ``reports.page``).

    Per-run sections cover the ``max_runs`` most recently started runs (None: all), and
    never more than ``reports.budget.MAX_CHARTED_RUNS``: the page has a size budget.
    """
    from reports.page import render_report as render

    return render(store, diagnosis, title=title, max_runs=max_runs)


def write_report(
    store: Store,
    diagnosis: Diagnosis,
    out: str | Path,
    *,
    title: str | None = None,
    max_runs: int | None = MAX_RUNS,
) -> Path:
    """Write the report to ``out`` and return its path (see ``reports.page``)."""
    from reports.page import write_report as write

    return write(store, diagnosis, out, title=title, max_runs=max_runs)
