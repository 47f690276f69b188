"""Test helpers: small synthetic stores, and a reader for the parts of a rendered page."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import vl_convert

from analysis import Diagnosis, Store, diagnose, open_store
from reports.charts.codes import CODE
from store.layout import stream_dir
from store.records import Rows
from store.schema import Stream, stream_columns
from tests.builders import RunBuilder, publish

HOSTILE = "<script>alert(1)</script>"

VEGALITE = "6.4"
"""The Vega-Lite version vl-convert compiles and draws with (the page's bundle: reports.assets)."""


def trained(root: Path, run_id: str = "r1", *, name: str | None = None, steps: int = 60) -> None:
    """A run with train/val loss and acc, lr, and gradients of three layers."""
    run = RunBuilder(root, run_id, name=name, config={"lr": 0.1, "arch": "mlp"})
    loss = [2.0 * math.exp(-3 * i / steps) + 0.05 for i in range(steps)]
    run.scalars("loss", "train", loss)
    run.scalars("acc", "train", [1 - v / 2.1 for v in loss])
    val_steps = list(range(10, steps + 1, 10))
    epochs = list(range(len(val_steps)))
    run.scalars(
        "loss", "val", [loss[s - 1] * 1.1 for s in val_steps], steps=val_steps, epochs=epochs
    )
    run.scalars("acc", "val", [0.5 + 0.05 * e for e in epochs], steps=val_steps, epochs=epochs)
    run.scalars("lr", "train", [0.1] * steps)
    for depth, scale in enumerate([0.01, 0.1, 1.0]):
        run.tensors(f"layer{depth}.weight", "grad", [scale] * steps)
    run.finish().write()


def open_diagnosed(root: Path) -> tuple[Store, Diagnosis]:
    store = open_store(root)
    return store, diagnose(store)


def open_undiagnosed(root: Path) -> tuple[Store, Diagnosis]:
    """The store and a diagnosis without findings: for page tests that need no rules (faster)."""
    store = open_store(root)
    return store, Diagnosis(store.sql("SELECT * FROM runs ORDER BY started_at, run_id"))


class Parts(HTMLParser):
    """What a browser would see: elements by tag, script bodies, section ids, and text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.sections: list[str] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._script = a
        if tag == "section" and a.get("id"):
            self.sections.append(str(a["id"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts.append((self._script, data))
        else:
            self.text.append(data)

    @property
    def plain_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def chart_specs(self) -> list[dict[str, Any]]:
        """The Vega-Lite specs embedded in the page, decoded as the page's script decodes them."""
        return [
            json.loads(body)
            for attrs, body in self.scripts
            if attrs.get("type") == "application/json" and attrs.get("data-chart")
        ]


def datasets(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of every dataset of ``spec``."""
    return [row for rows in spec.get("datasets", {}).values() for row in rows]


def named(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every data row of ``spec`` with its coded names restored, as the chart's lookup does.

    Per-series charts send each name once and refer to it by a code
    (``reports.charts.codes``); the name tables themselves are left out.
    """
    tables = spec.get("datasets", {})
    names: dict[int, dict[str, Any]] = {}
    lookups = [t for t in _find(spec, "lookup") if isinstance(t.get("from"), dict)]
    for lookup in lookups:
        source = lookup["from"]["data"]
        rows = tables[source["name"]] if "name" in source else source["values"]
        for row in rows:
            code = row[lookup["from"]["key"]]
            assert names.setdefault(code, row) == row, "one name table per chart"
    name_tables = {id(r) for r in names.values()}
    return [
        {**{k: v for k, v in names.get(row.get(CODE), {}).items() if k != CODE}, **row}
        for rows in tables.values()
        for row in rows
        if id(row) not in name_tables
    ]


def legend_labels(spec: dict[str, Any]) -> list[str]:
    """The legend entries Vega draws for ``spec``, in drawn order."""
    return [text for node in texts(spec, "legend-label") for text in node]


def axis_labels(spec: dict[str, Any]) -> list[list[str]]:
    """The labels Vega draws on each axis of ``spec`` (one list per axis), in drawn order."""
    return texts(spec, "axis-label")


def texts(spec: dict[str, Any], role: str) -> list[list[str]]:
    """The texts Vega draws for each scenegraph node of ``role`` (``title-text``), in order."""
    scene = vl_convert.vegalite_to_scenegraph(spec, vl_version=VEGALITE)
    return [
        [str(item.get("text")) for item in node.get("items", [])]
        for node in _find(scene, "role")
        if node["role"] == role
    ]


def _find(node: Any, key: str) -> list[dict[str, Any]]:
    """Every dict under ``node`` (itself included) that has ``key``."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if key in node:
            found.append(node)
        for v in node.values():
            found.extend(_find(v, key))
    elif isinstance(node, list):
        for v in node:
            found.extend(_find(v, key))
    return found


def marks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The marks of ``spec``'s layers (nested layers flattened), as dicts with ``type``."""
    out: list[dict[str, Any]] = []
    for layer in spec.get("layer", [spec]):
        if "layer" in layer:
            out.extend(marks(layer))
        elif "mark" in layer:
            mark = layer["mark"]
            out.append(mark if isinstance(mark, dict) else {"type": mark})
    return out


# -- streams that tests.builders.RunBuilder does not write ------------------------------------

_SEGMENT = 900
"""Segment numbers of these helpers: far from RunBuilder's 0, 1, 2, ... in any directory."""


def write_stream(root: Path, run_id: str, stream: Stream, batches: Sequence[Rows]) -> None:
    """Publish ``batches`` as one segment of ``stream`` (rank 0, attempt 0), as a writer would."""
    directory = stream_dir(root, run_id, stream)
    segment = _SEGMENT + (len(list(directory.iterdir())) if directory.exists() else 0)
    publish(root, run_id, stream, batches, segment=segment, first_seq=segment * 1_000_000)


def _rows(stream: Stream, step: int, columns: dict[str, list[Any]]) -> Rows:
    return Rows(stream, step=step, epoch=None, wall_time=1_700_000_000.0 + step, columns=columns)


def activations(
    root: Path,
    run_id: str,
    modules: Sequence[tuple[str, str]],
    steps: Sequence[int],
    **columns: Callable[[str, int], float | None] | float | None,
) -> None:
    """One ``activations`` row per (module, type) per step, modules in forward order.

    A column is a constant or a function of (module, step); the rest are a plain
    unit-variance output without dead or saturation statistics.
    """
    defaults: dict[str, Any] = {
        "numel": 1024,
        "mean": 0.0,
        "std": 1.0,
        "min": -3.0,
        "max": 3.0,
        "zero_frac": 0.0,
        "saturated_frac": None,
        "nonfinite": 0,
        "dead_frac": None,
    }
    spec = {**defaults, **columns}
    batches = []
    for step in steps:
        cols: dict[str, list[Any]] = {"module": [m for m, _ in modules]}
        cols["module_type"] = [t for _, t in modules]
        for name, value in spec.items():
            cols[name] = [value(m, step) if callable(value) else value for m, _ in modules]
        batches.append(_rows(Stream.ACTIVATIONS, step, cols))
    write_stream(root, run_id, Stream.ACTIVATIONS, batches)


def modules(root: Path, run_id: str, rows: Sequence[Mapping[str, Any]], *, step: int = 1) -> None:
    """The model summary: ``rows`` in registration order (stream columns; missing ones null)."""
    names = stream_columns(Stream.MODULES)
    cols = {n: [r.get(n) for r in rows] for n in names}
    write_stream(root, run_id, Stream.MODULES, [_rows(Stream.MODULES, step, cols)])


def sample(
    module: str,
    what: str,
    maps: Sequence[Sequence[Sequence[int]]],
    lo: Sequence[float],
    hi: Sequence[float],
) -> dict[str, Any]:
    """One ``samples`` row: ``maps`` [maps][H][W] of bytes, stored row-major as uint8."""
    h, w = len(maps[0]), len(maps[0][0])
    data = bytes(b for m in maps for row in m for b in row)
    return {
        "module": module,
        "what": what,
        "shape": [len(maps), h, w],
        "dtype": "uint8",
        "data": data,
        "lo": list(lo),
        "hi": list(hi),
    }


def samples(root: Path, run_id: str, by_step: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
    """``samples`` rows per step (see ``sample``), in the order given."""
    names = stream_columns(Stream.SAMPLES)
    batches = [
        _rows(Stream.SAMPLES, step, {n: [r.get(n) for r in rows] for n in names})
        for step, rows in by_step.items()
    ]
    write_stream(root, run_id, Stream.SAMPLES, batches)


def event(root: Path, run_id: str, kind: str, payload: Mapping[str, Any], *, step: int) -> None:
    """One event of the run's first attempt (RunBuilder would start a new attempt's events)."""
    cols = {"kind": [kind], "payload": [json.dumps(payload)]}
    write_stream(root, run_id, Stream.EVENTS, [_rows(Stream.EVENTS, step, cols)])
