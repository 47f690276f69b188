"""Test helpers: small synthetic stores, and a reader for the parts of a rendered page."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from analysis import Diagnosis, Store, diagnose, open_store
from tests.builders import RunBuilder

HOSTILE = "<script>alert(1)</script>"


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
