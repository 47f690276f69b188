"""Names sent once per chart: a long series refers to its parameter or module by a small code.

A per-parameter chart repeats the parameter's name on every point, and a model's
names are long (``encoder.layers.11.self_attn.out_proj.weight``): with 6,000 points
the names are a third of the chart's bytes. ``coded`` replaces the name columns by
one integer and returns the Vega-Lite ``lookup`` that restores them in the browser,
before any encoding reads them, so tooltips, legends and sort orders are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl

CODE = "__code"


def coded(
    frame: pl.DataFrame, key: str, *, also: Sequence[str] = ()
) -> tuple[pl.DataFrame, alt.LookupData]:
    """``frame`` with ``key`` (and the columns in ``also``, one value per key) as one code.

    Returns the coded frame and the names; draw it with
    ``alt.Chart(frame).transform_lookup(lookup=CODE, from_=names)``.
    """
    columns = [key, *also]
    table = frame.select(columns).unique(key, keep="first", maintain_order=True)
    table = table.with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias(CODE))
    out = frame.join(table.select(key, CODE), on=key, how="left", maintain_order="left")
    lookup = alt.LookupData(
        data=alt.InlineData(values=table.select(CODE, *columns).to_dicts()),
        key=CODE,
        fields=columns,
    )
    return out.drop(columns), lookup
