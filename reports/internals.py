"""Page values for what happens inside the model: summary table, activations, images, NaN origin.

Like ``reports.sections`` (which calls these builders), everything here is decided
before the template sees it: numbers are formatted, shapes printed, long tables
folded, and every chart is a ``reports.blocks.Chart``. A run without the data of a
section gets None or an empty block, and ``sections.build`` lists its name instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from reports.blocks import FULL, Chart, RunCharts, Size, display_name, marker_caption, to_spec
from reports.data import RunData
from reports.origin import INPUT
from reports.samples import WHAT, SampleSet

BYTES_PER_PARAM = 4
"""Parameter memory assumes float32: the store records parameter counts, not dtypes."""

MAX_SUMMARY_ROWS = 300
"""Model summary rows at most; deeper modules are folded into their parents beyond it."""

MAX_SHAPE_CHARS = 80
"""Longer shape descriptions (many inputs, dict outputs) are cut with an ellipsis."""

ROOT = ""
"""The module name of the model itself in the ``modules`` stream."""


@dataclass(frozen=True)
class ModuleRow:
    name: str
    """Qualified name; the model's type for the root module."""
    depth: int
    type: str
    input_shape: str
    output_shape: str
    own_params: str
    params: str
    trainable: str
    calls: str
    shared: bool
    """Called more than once per forward: shared weights."""
    unused: bool
    """Never called by the forward that was recorded."""
    root: bool


@dataclass(frozen=True)
class ModelTable:
    run_id: str
    name: str
    rows: list[ModuleRow]
    total_params: str
    trainable_params: str
    frozen_params: str
    param_memory: str
    folded: str | None = None
    """The sentence saying which rows were folded away, when some were."""


@dataclass(frozen=True)
class SharedModel:
    """A model summary, and every run whose summary is the same table (same architecture)."""

    table: ModelTable
    names: list[str]


def shared(tables: list[ModelTable]) -> list[SharedModel]:
    """``tables`` with identical ones (rows and totals) listed once, first seen first."""
    groups: dict[tuple[object, ...], SharedModel] = {}
    for t in tables:
        key = (tuple(t.rows), t.total_params, t.trainable_params, t.folded)
        if key in groups:
            groups[key].names.append(t.name)
        else:
            groups[key] = SharedModel(t, [t.name])
    return list(groups.values())


@dataclass(frozen=True)
class SampleBlock:
    """One module's feature maps (or the filters): where they come from, and the grids."""

    module: str
    what: str
    steps: str
    charts: list[Chart]
    problems: list[str]


@dataclass(frozen=True)
class RunImages:
    run_id: str
    name: str
    blocks: list[SampleBlock]
    left_out: int


@dataclass(frozen=True)
class OriginBox:
    """The NaN origin of one run, as the page's box states it."""

    anchor: str
    """Element id of the box (from the run's position, never from run data)."""
    run_id: str
    name: str
    module: str
    module_type: str
    step: int
    from_input: bool
    detail: str
    later: str


def model_table(run: RunData) -> ModelTable | None:
    """The torchinfo-like summary of ``run``'s model, or None if none was recorded."""
    modules = run.modules
    if modules is None or not modules.height:
        return None
    total, trainable = summary_totals(modules)
    shown, folded = _fold(modules, min(MAX_SUMMARY_ROWS, run.budget.summary_rows))
    rows = [_module_row(r) for r in shown.iter_rows(named=True)]
    return ModelTable(
        run_id=run.run_id,
        name=display_name(run.name, run.run_id),
        rows=rows,
        total_params=f"{total:,}",
        trainable_params=f"{trainable:,}",
        frozen_params=f"{total - trainable:,}",
        param_memory=(
            f"{format_bytes(total * BYTES_PER_PARAM)} "
            f"(assuming float32, {BYTES_PER_PARAM} bytes per parameter: the store does not "
            "record dtypes)"
        ),
        folded=folded,
    )


def summary_totals(modules: pl.DataFrame) -> tuple[int, int]:
    """(total, trainable) parameters of the model.

    The root row counts every parameter once, shared ones included (PyTorch's
    ``parameters()`` deduplicates). Without a root row, the top-level rows (whose
    parent is not in the table) are summed.
    """
    root = modules.filter(pl.col("module") == ROOT)
    if root.height:
        row = root.row(0, named=True)
        return int(row["params"] or 0), int(row["trainable_params"] or 0)
    names = modules["module"].to_list()
    top = modules.filter(~pl.col("parent").is_in(names).fill_null(False))
    return int(top["params"].fill_null(0).sum()), int(top["trainable_params"].fill_null(0).sum())


def format_bytes(n: int) -> str:
    """``512 B``, ``241.0 KiB``, ``3.52 MiB``, ``1.20 GiB``."""
    if n < 1024:
        return f"{n} B"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value >= 100 else f"{value:.2f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_shape(text: str | None) -> str:
    """A shape as stored (JSON: [dims], nested lists, dicts, null) as a short readable string."""
    if text is None:
        return "—"
    try:
        parsed = json.loads(text)
    except ValueError:
        shown = text
    else:
        shown = "—" if parsed is None else json.dumps(parsed, separators=(", ", ": "))
    return shown if len(shown) <= MAX_SHAPE_CHARS else shown[: MAX_SHAPE_CHARS - 1] + "…"


def _fold(modules: pl.DataFrame, rows: int) -> tuple[pl.DataFrame, str | None]:
    """The rows to show: all, or the deepest levels that fit in ``rows``."""
    if modules.height <= rows:
        return modules, None
    depth = pl.col("depth").fill_null(0)
    max_depth = 0
    for d in sorted(set(modules["depth"].fill_null(0).to_list())):
        if modules.filter(depth <= d).height > rows:
            break
        max_depth = d
    shown = modules.filter(depth <= max_depth).head(rows)
    return shown, (
        f"{modules.height - shown.height:,} of {modules.height:,} modules not listed "
        f"(deeper than depth {max_depth}); their parameters are counted in their parents' "
        "params and in the totals."
    )


def _module_row(r: dict[str, Any]) -> ModuleRow:
    calls = r.get("calls")
    root = r["module"] == ROOT
    return ModuleRow(
        name=str(r["module_type"] or "(model)") if root else str(r["module"]),
        depth=max(0, min(12, int(r["depth"] or 0))),
        type=str(r["module_type"] or ""),
        input_shape=format_shape(r["input_shape"]),
        output_shape=format_shape(r["output_shape"]),
        own_params=_count(r.get("own_params")),
        params=_count(r["params"]),
        trainable=_count(r["trainable_params"]),
        calls=_count(calls),
        shared=calls is not None and calls > 1,
        # the model itself has 0 calls when the loop calls its children directly
        # (a LightningModule's training_step calling self.net): not unused
        unused=calls == 0 and not root,
        root=root,
    )


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def activation_charts(run: RunData, ids: Iterator[str], *, size: Size = FULL) -> RunCharts:
    """Zero fraction and std heatmaps, then dead and saturated unit fractions, when recorded."""
    from reports.charts.activations import fraction_chart, heatmap_chart  # imports altair

    charts: list[Chart] = []
    acts = run.activations
    if acts is not None:
        for heat, value, title, log in (
            (acts.zero_frac, "zero_frac", "share of exact zeros per module", False),
            (acts.std, "std", "std of the output per module (log colour)", True),
        ):
            chart = heatmap_chart(
                cells=heat.cells,
                markers=heat.markers,
                order=heat.order,
                value=value,
                title=title,
                log=log,
                width=size.width,
                row_height=size.heat_row,
                max_height=size.heat_max,
            )
            caption = marker_caption(heat.markers, noun="cell", verb="coloured", mark="red")
            topic = "activations" if value == "zero_frac" else "activation_std"
            charts.append(
                Chart(next(ids), to_spec(chart), note=heat.note, caption=caption, topic=topic)
            )
        for fractions, value, title, y_title in (
            (acts.dead, "dead_frac", "dead units (ReLU family)", "share of dead units"),
            (acts.saturated, "saturated_frac", "saturated outputs", "share saturated"),
        ):
            if fractions is None:
                continue
            s = fractions.series
            chart = fraction_chart(
                points=s.points,
                markers=s.markers,
                order=fractions.drawn,
                value=value,
                title=title,
                y_title=y_title,
                width=size.width,
                height=size.height,
            )
            caption = marker_caption(s.markers, total=s.marked)
            spec, note = to_spec(chart), fractions.note
            charts.append(Chart(next(ids), spec, note=note, caption=caption, topic=value))
    return RunCharts(run.run_id, display_name(run.name, run.run_id), charts)


def image_blocks(run: RunData, ids: Iterator[str], *, columns: int | None = None) -> RunImages:
    """Per sampled module: the grids of its first and latest sampled step.

    ``columns``: panels per row of a grid (default ``reports.charts.images.COLUMNS``).
    """
    from reports.charts.images import COLUMNS, image_grid  # imports altair

    blocks = []
    for sample in run.samples:
        label = WHAT.get(sample.what, sample.what)
        panel = "kernel" if sample.what == "filter" else "channel"
        charts = [
            Chart(
                next(ids),
                to_spec(
                    image_grid(
                        maps=image.maps,
                        height=image.height,
                        width=image.width,
                        title=f"{sample.module or '(model)'} · {label}",
                        subtitle=f"step {image.step}",
                        panel=panel,
                        columns=columns or COLUMNS,
                    )
                ),
                note=image.caption,
            )
            for image in sample.images
        ]
        blocks.append(
            SampleBlock(sample.module, label, _steps_text(sample), charts, sample.problems)
        )
    name = display_name(run.name, run.run_id)
    return RunImages(run.run_id, name, blocks, run.samples_left_out)


def _steps_text(sample: SampleSet) -> str:
    """``sampled at 10 steps: 1, 51, 101, …, 451; drawn: the first and the latest``."""
    steps = sample.steps
    listed = (
        [str(s) for s in steps]
        if len(steps) <= 12
        else [
            *(str(s) for s in steps[:6]),
            "…",
            *(str(s) for s in steps[-3:]),
        ]
    )
    noun = "step" if len(steps) == 1 else "steps"
    drawn = "" if len(steps) == 1 else "; drawn: the first and the latest"
    return f"sampled at {len(steps):,} {noun}: {', '.join(listed)}{drawn}"


def origin_box(run: RunData, index: int) -> OriginBox | None:
    """The NaN-origin box of the ``index``-th run, or None when no origin was recorded."""
    origin = run.nan_origin
    if origin is None:
        return None
    return OriginBox(
        anchor=f"nan-origin-{index}",
        run_id=run.run_id,
        name=display_name(run.name, run.run_id),
        module=origin.module or "(the model itself)",
        module_type=origin.module_type,
        step=origin.step,
        from_input=origin.module == INPUT,
        detail=origin.detail,
        later=", ".join(str(s) for s in origin.later),
    )
