"""Names sent once per chart, and never as code: a series refers to its name by a small integer.

A per-parameter chart repeats the parameter's name on every point, and a model's
names are long (``encoder.layers.11.self_attn.out_proj.weight``): with 6,000 points
the names are a third of the chart's bytes. ``coded`` replaces the name columns by
one integer and returns the Vega-Lite ``lookup`` that restores them in the browser,
before any encoding reads them, so tooltips and legends are unchanged.

The code is also the sort order (``BY_CODE``). A sort given as a list of names is
compiled by Vega-Lite into an expression (``datum.param === "..." ? 0 : ...``), and a
run's names must never become expression source: a name is only ever a data value.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

CODE = "__code"

BY_CODE = alt.EncodingSortField(field=CODE, op="min")
"""Sort a channel by the names' codes: the ``order`` given to ``coded``."""


def coded(
    frame: pl.DataFrame,
    key: str,
    *,
    also: Sequence[str] = (),
    order: Sequence[str] = (),
    more: Sequence[pl.DataFrame] = (),
) -> tuple[list[pl.DataFrame], alt.LookupData]:
    """``frame`` (and each of ``more``) with ``key`` and the columns in ``also`` as one code.

    Codes follow ``order`` first, then the names' first appearance; frames coded in
    one call share the codes. Draw each with
    ``alt.Chart(frame).transform_lookup(lookup=CODE, from_=names)``.
    """
    columns = [key, *also]
    frames = [frame, *more]
    seen = pl.concat([f.select(columns) for f in frames], how="vertical_relaxed")
    ranked = pl.DataFrame({key: list(order)}, schema={key: seen.schema[key]}).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("__rank")
    )
    table = (
        seen.with_row_index("__seen")
        .unique(key, keep="first", maintain_order=True)
        .join(ranked, on=key, how="left")
        .sort(pl.col("__rank").fill_null(len(order) + pl.col("__seen").cast(pl.Int64)))
        .select(columns)
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias(CODE))
    )
    out = [
        f.join(table.select(key, CODE), on=key, how="left", maintain_order="left").drop(columns)
        for f in frames
    ]
    lookup = alt.LookupData(
        data=alt.InlineData(values=table.select(CODE, *columns).to_dicts()),
        key=CODE,
        fields=columns,
    )
    return out, lookup
