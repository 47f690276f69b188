"""What every chart draws along the step axis: the axis, and red marks where a value is missing.

The x axis of every chart is the global optimizer step, an integer: ``step_x``
keeps Vega-Lite from labelling a short run's axis 1.1, 1.2, ...

Vega-Lite leaves a silent gap where a value is NaN, and JSON cannot carry NaN or
Inf at all; ``reports.data`` moves such rows into a marker frame with a ``label``.
``nonfinite_layer`` draws each of them as a red dashed rule at its step with a
triangle on top, and a tooltip that says what the value was.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

from reports.theme import NONFINITE


def step_x() -> alt.X:
    """The shared x encoding: ``step``, integer ticks only."""
    return alt.X("step:Q", title="step", axis=alt.Axis(format="d", tickMinStep=1))


def nonfinite_layer(
    markers: pl.DataFrame, *, tooltip: Sequence[alt.Tooltip], what: str = "value"
) -> alt.LayerChart:
    """Red rule + triangle at the step of every row of ``markers`` (which has ``step``, ``label``).

    ``tooltip`` lists the identifying fields (split, param); the label follows it.
    """
    tips = [*tooltip, alt.Tooltip("step:Q", title="step"), alt.Tooltip("label:N", title=what)]
    base = alt.Chart(markers)
    rule = base.mark_rule(color=NONFINITE, strokeDash=[4, 3], strokeWidth=1.5, opacity=0.6).encode(
        x=step_x(), tooltip=tips
    )
    tip = base.mark_point(
        shape="triangle-down", filled=True, size=70, color=NONFINITE, opacity=1
    ).encode(x=step_x(), y=alt.value(4), tooltip=tips)
    return alt.LayerChart(layer=[rule, tip])
