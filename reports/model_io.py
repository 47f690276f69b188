"""Chart blocks of what goes into the model and what comes out: its inputs and its predictions.

Each function turns one run's ``RunData`` into a ``RunCharts`` of ``Chart`` blocks
with their sentences and evidence topics (``reports.evidence``): ``inputs`` for the
input chart (the rule ``unnormalized_inputs``), ``confusion:<split>`` and
``class_recall:<split>`` for a split's matrix and recall lines, ``residuals`` for the
regression errors (``class_imbalance``, ``prediction_collapse``: their subject is the
split). A run without the data gets an empty block and ``sections.build`` names it
instead. Altair is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator

from reports.blocks import FULL, Chart, RunCharts, Size, display_name, series_chart, to_spec
from reports.data import RunData
from reports.predictions import Matrix


def inputs(run: RunData, ids: Iterator[str], *, size: Size = FULL) -> RunCharts:
    """The run's input chart, or no chart when it recorded no input statistics."""
    charts = []
    if run.inputs is not None:
        from reports.charts.inputs import inputs_chart  # deferred: imports altair

        i = run.inputs
        steps = int(i.features["steps"].max() or 0)  # type: ignore[arg-type]
        subtitle = f"median over {steps:,} sampled training step{'s' if steps != 1 else ''}"
        if i.wide:
            subtitle += "; stds 100x or more apart: each std on a log axis below"
        chart = inputs_chart(
            features=i.features,
            noun=i.noun,
            spreads=i.wide,
            subtitle=subtitle,
            width=size.width,
            height=size.height,
        )
        charts.append(Chart(next(ids), to_spec(chart), note=i.note, topic="inputs"))
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def predictions(run: RunData, ids: Iterator[str], *, size: Size = FULL) -> RunCharts:
    """The run's confusion matrices, recall lines and regression errors (none when it
    logged no predictions); the note names the splits left out."""
    p = run.predictions
    name = display_name(run.name, run.run_id)
    if p is None:
        return RunCharts(run.run_id, name, [])
    from reports.charts.predictions import confusion_chart, recall_chart, residuals_chart

    charts = [
        Chart(
            next(ids),
            to_spec(
                confusion_chart(
                    cells=m.cells,
                    per_class=m.per_class,
                    classes=m.classes,
                    title=f"confusion matrix: {m.split}",
                    subtitle=_matrix_subtitle(m),
                    width=size.width,
                )
            ),
            # The splits left out are named under the last matrix: with several runs a
            # section is rows of charts (reports.multiples), and a run's own note is lost.
            note=_joined(m.note, p.note if m is p.matrices[-1] else None),
            topic=f"confusion:{m.split}",
        )
        for m in p.matrices
    ]
    if p.recall is not None:
        s = p.recall.series
        chart = recall_chart(
            points=s.points,
            markers=s.markers,
            split=p.recall.split,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), chart, s, topic=f"class_recall:{p.recall.split}"))
    if p.residuals is not None:
        r = p.residuals
        errors = residuals_chart(
            points=r.series.points,
            markers=r.series.markers,
            lines=r.lines,
            width=size.width,
            height=size.height,
        )
        charts.append(series_chart(next(ids), errors, r.series, topic="residuals"))
    return RunCharts(run.run_id, name, charts)


def _matrix_subtitle(m: Matrix) -> str:
    """``step 400 · 10,000 examples · accuracy 91.2 % · each row: the share of its class``."""
    return (
        f"step {m.step:,} · {m.examples:,} examples · accuracy {m.accuracy:.1%} · "
        "a row is its true class's examples (the diagonal: its recall)"
    )


def _joined(*notes: str | None) -> str | None:
    return " ".join(n for n in notes if n) or None
