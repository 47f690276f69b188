"""What mattered: the runs in parallel coordinates (config -> outcome), and a scatter per top
hyperparameter against the outcome.

Parallel coordinates are a folded long table drawn as lines: one vertical axis per
hyperparameter and the outcome last, a line per run coloured by its outcome, the values
normalised to [0, 1] by ``reports.coordinates`` (the y axis is hidden: each vertical axis
carries its own labels, and the tooltips the real values). Failed and diverged runs have
no comparable outcome: red dashed lines ending beyond the worst end of the outcome axis,
crosses at the worst edge of a scatter, named in the legend and the tooltip.

Hyperparameter names and levels are run data: they reach the chart as data values (the
x axis of the parallel coordinates, sorted by a numeric field, never by a list of
names) and as panel titles; axis, legend and tooltip titles are the page's own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import polars as pl

from reports.coordinates import GAP, OK, Axis, Outcome
from reports.theme import NONFINITE

AXIS_WIDTH = 120
"""Pixels between two vertical axes of the parallel coordinates."""

PANEL_WIDTH = 190
PANEL_HEIGHT = 180
COLUMNS = 4

SCHEME = {"name": "viridis", "extent": [0.0, 0.85]}
"""The outcome's colours, without viridis's palest yellow (unreadable on white)."""

STATES = {
    OK: ("with an outcome", "#4c78a8", "circle", [1, 0]),
    "diverged": ("diverged (ranked worst)", NONFINITE, "cross", [6, 3]),
    "failed": ("failed (ranked worst)", NONFINITE, "triangle-down", [2, 2]),
    "crashed": ("crashed (ranked worst)", NONFINITE, "diamond", [8, 2, 2, 2]),
}
"""Per state of a run: its legend entry, colour, scatter shape and dash."""


def parallel_chart(
    *,
    lines: pl.DataFrame,
    ticks: pl.DataFrame,
    outcome: Outcome,
    title: str,
    subtitle: str,
    height: int = 260,
) -> alt.LayerChart:
    """``lines``: run, axis, index, y, value, score, outcome, state (``reports.sweep``);
    ``ticks``: axis, index, y, label."""
    axes = ticks["index"].n_unique()  # every axis has a label at least
    by_index = alt.EncodingSortField(field="index", op="min")
    x = alt.X(
        "axis:N",
        sort=by_index,
        title=None,
        scale=alt.Scale(paddingOuter=0.15),
        axis=alt.Axis(labelAngle=0, labelLimit=AXIS_WIDTH - 8, orient="bottom", ticks=False),
    )
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-GAP - 0.06, 1 + GAP + 0.06], nice=False))
    tips = [
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("axis:N", title="axis"),
        alt.Tooltip("value:N", title="value"),
        alt.Tooltip("outcome:N", title="outcome"),
    ]
    order = alt.Order("index:Q")
    ok, bad = lines.filter(pl.col("state") == OK), lines.filter(pl.col("state") != OK)
    colour = alt.Color(
        "score:Q",
        title="outcome",
        scale=_continuous(outcome.log, scheme=SCHEME),
        legend=alt.Legend(type="gradient", format=".3~g", gradientLength=120),
    )
    rules = alt.Chart(ticks).mark_rule(color="#bbb").encode(x=x)
    labels = (
        alt.Chart(ticks)
        .mark_text(align="left", dx=5, fontSize=10, color="#555", limit=AXIS_WIDTH - 12)
        .encode(x=x, y=y, text="label:N")
    )
    layers: list[alt.Chart] = [rules]
    if ok.height:
        good = alt.Chart(ok).encode(x=x, y=y, detail="run:N", order=order, tooltip=tips)
        # The legend from the dots: a line's stroke would make Vega draw symbols, not a ramp.
        line_colour = colour.legend(None)
        layers.append(good.mark_line(strokeWidth=1.6, opacity=0.85).encode(color=line_colour))
        layers.append(good.mark_circle(size=26, opacity=1).encode(color=colour))
    if bad.height:
        states = _present(bad)
        dash = alt.StrokeDash(
            "state:N",
            title=None,
            scale=alt.Scale(domain=states, range=[STATES[s][3] for s in states]),
            legend=alt.Legend(
                labelExpr=_LEGEND_LABELS, symbolStrokeColor=NONFINITE, symbolStrokeWidth=2
            ),
        )
        worst = alt.Chart(bad).encode(x=x, y=y, detail="run:N", order=order, tooltip=tips)
        layers.append(worst.mark_line(color=NONFINITE, strokeWidth=1.8).encode(strokeDash=dash))
        layers.append(worst.mark_point(color=NONFINITE, shape="cross", size=40, filled=True))
    layers.append(labels)
    return (
        alt.LayerChart(layer=layers)
        .properties(
            width=max(420, AXIS_WIDTH * axes),
            height=height,
            title=alt.TitleParams(title, subtitle=subtitle),
        )
        .resolve_legend(color="independent")
    )


def scatter_chart(
    *,
    points: pl.DataFrame,
    medians: pl.DataFrame,
    axes: Sequence[Axis],
    outcome: Outcome,
    title: str,
    subtitle: str,
) -> alt.ConcatChart:
    """``points``: param, run, x, level, jitter, y, value, outcome, state; ``medians``:
    param, level, y (a tick per level of a categorical panel)."""
    low, high = outcome.domain
    y = alt.Y(
        "y:Q",
        title="best value",
        scale=_continuous(outcome.log, domain=[low, high], nice=False),
    )
    states = _present(points)
    colour = alt.Color(
        "state:N",
        title="run",
        scale=alt.Scale(domain=states, range=[STATES[s][1] for s in states]),
        legend=alt.Legend(labelExpr=_LEGEND_LABELS),
    )
    shape = alt.Shape(
        "state:N", scale=alt.Scale(domain=states, range=[STATES[s][2] for s in states])
    )
    tips = [
        alt.Tooltip("run:N", title="run"),
        alt.Tooltip("value:N", title="value"),
        alt.Tooltip("outcome:N", title="outcome"),
    ]
    panels = []
    for axis in axes:
        rows = points.filter(pl.col("param") == axis.name)
        if not rows.height:
            continue
        if axis.kind == "numeric":
            x = alt.X(
                "x:Q",
                title="value" + (" (log)" if axis.log else ""),
                scale=_continuous(axis.log, nice=False, padding=10),
            )
            offset = None
        else:
            x = alt.X("level:N", title="level", axis=alt.Axis(labelAngle=0, labelLimit=100))
            offset = alt.XOffset("jitter:Q", scale=alt.Scale(domain=[-0.5, 0.5]))
        dots = alt.Chart(rows).mark_point(filled=True, size=70, opacity=0.85)
        dots = dots.encode(x=x, y=y, color=colour, shape=shape, tooltip=tips)
        if offset is not None:
            dots = dots.encode(xOffset=offset)
        layers: list[alt.Chart] = [dots]
        level_medians = medians.filter(pl.col("param") == axis.name)
        if axis.kind != "numeric" and level_medians.height:
            layers.insert(
                0,
                alt.Chart(level_medians)
                .mark_tick(color="#888", thickness=2, size=30)
                .encode(x=x, y=y),
            )
        if (points["state"] != OK).any():
            edge = pl.DataFrame({"y": [outcome.worst]})
            rule = alt.Chart(edge).mark_rule(color=NONFINITE, opacity=0.3, strokeDash=[4, 3])
            layers.insert(0, rule.encode(y=y))
        panels.append(
            alt.layer(*layers).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT, title=axis.name)
        )
    return alt.concat(*panels, columns=COLUMNS).properties(
        title=alt.TitleParams(title, subtitle=subtitle)
    )


def _continuous(log: bool, **kwargs: Any) -> alt.Scale:
    """A log scale, or a linear one that need not start at zero (a log scale never does)."""
    return alt.Scale(type="log", **kwargs) if log else alt.Scale(zero=False, **kwargs)


def _present(frame: pl.DataFrame) -> list[str]:
    """The states of ``frame``'s runs, in ``STATES`` order (the legend's)."""
    seen = set(frame["state"].to_list())
    return [s for s in STATES if s in seen]


# The legend's words, from the page's own table: a state is one of STATES' keys, never
# run data, so the expression below is built from constants only.
_LEGEND_LABELS = " : ".join(
    [f"datum.label === '{key}' ? '{words}'" for key, (words, *_) in STATES.items()]
    + ["datum.label"]
)
