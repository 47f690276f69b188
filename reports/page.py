"""Assemble the report: one Jinja2 template, autoescaped, with the charts' JSON made script-safe.

Everything a run wrote (names, metrics, parameters, config, messages) is
untrusted text. In HTML it goes through Jinja2's autoescape. Inside the
``<script type="application/json">`` blocks that carry the chart specs, HTML
escaping would corrupt the JSON (a script's text is not entity-decoded), so
``script_json`` escapes ``<``, ``>`` and ``&`` as ``\\u003c``, ``\\u003e``,
``\\u0026`` instead: valid JSON that decodes to the same strings and can never
close the script element.

A run's strings can also be invalid Unicode: JSON text (a config, an event's payload)
may spell a lone surrogate (``"\\udc80"``), which Python decodes into a ``str`` that
UTF-8 cannot encode. The page replaces each by U+FFFD, so one odd name never stops a
report from being written.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from reports import data, sections
from reports.defaults import MAX_RUNS
from reports.theme import VEGA_CONFIG

if TYPE_CHECKING:
    from analysis import Diagnosis, Store

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    # Valid in JSON but line terminators in older JavaScript parsers.
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def render_report(
    store: Store,
    diagnosis: Diagnosis,
    *,
    title: str | None = None,
    max_runs: int | None = MAX_RUNS,
) -> str:
    """The report as HTML text for the runs of ``diagnosis`` (all of them, in its order).

    The runs table, the findings of runs with any and the run comparison cover every
    run; charts and the other per-run sections cover the ``max_runs`` most recently
    started ones (None: all, up to ``reports.budget.MAX_CHARTED_RUNS``), so a store of
    hundreds of runs stays a readable page.

    Example::

        from analysis import diagnose, open_store
        from reports import render_report

        store = open_store("runs")
        html = render_report(store, diagnose(store), title="nightly")
    """
    page = sections.build(data.load(store, diagnosis, max_runs=max_runs), title=title)
    bundle = ""
    if page.has_charts:
        from reports.assets import javascript_bundle  # deferred: ~3 s the first time

        bundle = javascript_bundle()
    html = valid_unicode(
        _environment()
        .get_template(TEMPLATE)
        .render(page=page, bundle=Markup(bundle), vega_config=VEGA_CONFIG)
    )
    log.info("rendered report: %d runs, %d bytes", page.header.runs, len(html))
    return html


def write_report(
    store: Store,
    diagnosis: Diagnosis,
    out: str | Path,
    *,
    title: str | None = None,
    max_runs: int | None = MAX_RUNS,
) -> Path:
    """Render the report and write it to ``out`` (parents created); returns the path.

    The file is written under a temporary name and renamed into place, so a
    reader (or a browser tab being refreshed) never sees half a report.
    """
    path = Path(out)
    html = render_report(store, diagnosis, title=title, max_runs=max_runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates the file 0600, and a report is meant to be shared;
    # a plain exclusive create gets the permissions the user's umask gives any file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def valid_unicode(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a pair is joined into its character).

    UTF-16 with ``surrogatepass`` carries lone surrogates through as code units; decoding
    with ``replace`` turns each unpaired one into U+FFFD.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def script_json(value: Any) -> Markup:
    """``value`` as JSON that is safe verbatim inside a ``<script>`` element.

    NaN and Inf are refused (``allow_nan=False``): they are not JSON, and
    ``reports.data`` has already turned them into markers.
    """
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return Markup(text.translate(_SCRIPT_ESCAPES))


def with_config(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the page's Vega-Lite ``config`` underneath whatever the chart set itself."""
    merged = dict(config)
    for key, value in spec.get("config", {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return {**spec, "config": merged}


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["script_json"] = script_json
    env.filters["with_config"] = with_config
    return env
