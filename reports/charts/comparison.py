"""Run comparison chart: each varying hyperparameter against the runs' best validation metric.

One small panel per hyperparameter, a point per run: numeric values on a linear
or, when they span a factor of 20 or more (learning rates), log axis;
other values (optimizer names) as categories. The best run is ringed.
"""

from __future__ import annotations

import altair as alt
import polars as pl

PANEL_WIDTH = 240
PANEL_HEIGHT = 180
COLUMNS = 3


def comparison_chart(
    *, points: pl.DataFrame, params: list[str], metric: str, lower_is_better: bool
) -> alt.ConcatChart:
    """``points``: hyperparameter, run, value (text), x (numeric or null), best."""
    # The metric and the hyperparameters are run data: titles of the chart and its panels
    # only, never of an axis or a tooltip (compiled into Vega expressions).
    best_y = alt.Y("best:Q", title="best val", scale=alt.Scale(zero=False, reverse=False))
    tooltip = [
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("hyperparameter:N", title="hyperparameter"),
        alt.Tooltip("value:N", title="value"),
        alt.Tooltip("best:Q", title="best val", format=".4~g"),
    ]
    best = points["best"].min() if lower_is_better else points["best"].max()
    panels = []
    for param in params:
        rows = points.filter(pl.col("hyperparameter") == param)
        if not rows.height:
            continue
        numeric = rows["x"].null_count() == 0
        if numeric:
            lo, hi = rows["x"].min(), rows["x"].max()
            wide = lo is not None and hi is not None and lo > 0 and hi / lo >= 20  # type: ignore[operator]
            x = alt.X(
                "x:Q", title="value", scale=alt.Scale(type="log" if wide else "linear", zero=False)
            )
        else:
            x = alt.X("value:N", title="value", axis=alt.Axis(labelLimit=120))
        base = alt.Chart(rows).encode(x=x, y=best_y, tooltip=tooltip)
        dots = base.mark_point(filled=True, size=60, opacity=0.8, color="#4c78a8")
        ring = base.transform_filter(alt.datum.best == best).mark_point(
            size=220, color="#2e7d32", strokeWidth=2
        )
        panels.append(
            alt.layer(dots, ring).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT, title=param)
        )
    better = "lower" if lower_is_better else "higher"
    return alt.concat(*panels, columns=COLUMNS).properties(
        title=alt.TitleParams(
            f"hyperparameters vs best val {metric}",
            subtitle=f"one point per run, {better} is better; the best run is ringed",
        )
    )
