"""Small multiples: a section's per-run charts regrouped as a row per quantity, a chart per run.

With several runs, the gradients, weights and activations sections would otherwise
stack every run's whole set of charts (five runs: a 7,500 px gradients section).
Regrouped, the global norm of every run sits in one row of small charts of the same
size, three to a line of the page, each keeping its title (the quantity) with its run's
name as the subtitle's first line. The charts keep their ids, titles and topics, so a
finding's evidence link (``reports.evidence``) lands on its run's chart in the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from reports.blocks import Chart, RunCharts
from reports.evidence import title


@dataclass(frozen=True)
class Row:
    """One quantity (``global gradient norm``) drawn for every run that recorded it."""

    title: str
    charts: list[Chart]
    """One per run, in the runs' order, the run's name under the title."""
    missing: list[str]
    """Runs of the section without this quantity."""


def rows(blocks: Sequence[RunCharts], names: Mapping[str, str]) -> list[Row]:
    """``blocks`` (one per run) as a row per quantity, in the order the runs draw them.

    A chart's quantity is its evidence topic (its title when it has none). ``names``:
    run id -> the name a chart is titled with (``reports.figures.legend_names``).
    """
    place: dict[str, float] = {}
    found: dict[str, list[tuple[str, Chart]]] = {}
    for block in blocks:
        for i, chart in enumerate(block.charts):
            key = chart.topic or title(chart)
            place[key] = min(place.get(key, float(i)), float(i))
            found.setdefault(key, []).append((block.run_id, chart))
    out = []
    for key in sorted(found, key=lambda k: place[k]):
        having = found[key]
        drawn = {run_id for run_id, _ in having}
        out.append(
            Row(
                title=title(having[0][1]),
                charts=[_named(chart, names[run_id]) for run_id, chart in having],
                missing=[names[b.run_id] for b in blocks if b.run_id not in drawn],
            )
        )
    return out


def _named(chart: Chart, name: str) -> Chart:
    """``chart`` with ``name`` first in its subtitle; a subtitle it had (how many steps
    were clipped) stays under it."""
    old = chart.spec.get("title")
    text = title(chart)
    had = old.get("subtitle") if isinstance(old, dict) else None
    lines = [name, *([had] if isinstance(had, str) else (had or []))]
    new = {**old, "text": text} if isinstance(old, dict) else {"text": text}
    return replace(chart, spec={**chart.spec, "title": {**new, "subtitle": lines}})
