"""Open a report in headless Chromium with the network cut, and collect what a reader would see.

Debian's ``chromium`` package (installed by the Makefile when missing) driven by
Playwright for Python, which never downloads a browser here: it is told where the
system one is. Every request that is not ``file://`` (or an inline ``data:``/``blob:``
URL) is aborted and counted, so "the page makes no network request" is measured,
not assumed. A missing browser fails the test with the command that installs it:
a report nobody opened in a browser is not tested.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ENV = "TELEMETRY_CHROMIUM"
"""Overrides the browser's path (default: ``chromium`` on PATH, then /usr/bin/chromium)."""

RENDER_TIMEOUT_MS = 90_000
"""How long every chart may take to draw: generous, the test machine has 2 busy cores."""

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# Every chart container done: Vega drew an <svg class="marks"> (or a canvas), or the
# page's loader wrote its "could not be drawn" sentence into it.
_ALL_DRAWN = """() => Array.from(document.querySelectorAll('div.chart')).every(
    c => c.querySelector('svg.marks, canvas') || c.textContent.includes('could not be drawn'))"""

_LEGENDS = """() => Array.from(document.querySelectorAll('div.chart')).flatMap(c => {
    const svg = c.querySelector('svg.marks');
    if (!svg) return [];
    const s = svg.getBoundingClientRect();
    return Array.from(svg.querySelectorAll('g.role-legend')).map(g => {
        const r = g.getBoundingClientRect();
        return {chart: c.id,
                inside: r.left >= s.left - 1 && r.right <= s.right + 1
                        && r.top >= s.top - 1 && r.bottom <= s.bottom + 1,
                labels: Array.from(g.querySelectorAll('.role-legend-label text'))
                        .map(t => t.textContent)};
    });
})"""

_HEIGHT = "() => document.documentElement.scrollHeight"

_CHARTS = """() => Array.from(document.querySelectorAll('div.chart')).map(c => ({
    id: c.id,
    drawn: !!c.querySelector('svg.marks, canvas'),
    text: c.textContent.includes('could not be drawn') ? c.textContent : ''
}))"""


def chromium() -> str:
    """The system Chromium's path, or a test failure that says how to install it."""
    wanted = os.environ.get(CHROMIUM_ENV)
    candidates = [wanted] if wanted else [shutil.which("chromium"), "/usr/bin/chromium"]
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "headless Chromium is needed to test the report in a real browser and was not found "
        f"({'$' + CHROMIUM_ENV + '=' + wanted if wanted else 'chromium on PATH, /usr/bin/chromium'}"
        "): install it with `sudo apt-get install -y chromium` (`make test` does this)",
        pytrace=False,
    )


@dataclass
class Opened:
    """What happened while the page loaded and drew its charts."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    findings_tables: int = 0
    sorted_names: list[list[str]] = field(default_factory=list)
    """The runs table's first column after clicking the ``name`` header once, then twice."""
    links: list[tuple[str, bool]] = field(default_factory=list)
    """Each findings ``evidence`` link's target id, and whether that element exists."""
    sections_open: dict[str, bool] = field(default_factory=dict)
    """Section id -> whether its ``<details>`` was open as the page loaded."""
    height: int = 0
    """The page's height in CSS px as loaded (sections collapsed)."""
    height_open: int = 0
    """The page's height with every section expanded (its "Expand all" button)."""
    toc_position: str = ""
    toc_top_after_scroll: float = -1.0
    """Where the table of contents is in the viewport after scrolling to the last section."""
    legends: list[dict[str, Any]] = field(default_factory=list)
    """Every chart legend (sections expanded): its chart, whether its box lies within the
    chart's drawing, and its labels (Vega cuts a label too long for its limit with "…")."""
    evidence_opens: bool = False
    """Clicking an evidence link into a collapsed section opened it and showed the chart."""


def open_report(path: Path, screenshot: Path) -> Opened:
    """Load ``path`` from ``file://`` offline, wait for every chart, and record what happened."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is needed for the browser test: `.venv/bin/pip install "
            "-e '.[dev]'` (it downloads no browser: the system chromium is used)",
            pytrace=False,
        )
    seen = Opened()
    with sync_playwright() as p:
        # --no-sandbox: CI and these machines run as root, where Chromium's sandbox refuses.
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def route(r: Any) -> None:
                if r.request.url.startswith(LOCAL_SCHEMES):
                    r.continue_()
                else:
                    seen.blocked_requests.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on(
                "console",
                lambda m: seen.console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: seen.page_errors.append(str(e)))

            def dialog(d: Any) -> None:
                seen.dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", dialog)
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(_ALL_DRAWN, timeout=RENDER_TIMEOUT_MS)
            seen.charts = page.evaluate(_CHARTS)
            seen.findings_tables = page.locator("table.findings").count()
            seen.links = page.evaluate(
                """() => Array.from(document.querySelectorAll('a.evidence')).map(a => {
                    const id = decodeURIComponent(a.getAttribute('href').slice(1));
                    return [id, !!document.getElementById(id)];
                })"""
            )
            seen.sections_open = page.evaluate(
                """() => Object.fromEntries(Array.from(document.querySelectorAll('section'))
                    .filter(s => s.querySelector(':scope > details'))
                    .map(s => [s.id, s.querySelector(':scope > details').open]))"""
            )
            seen.height = page.evaluate(_HEIGHT)
            evidence = page.locator("a.evidence").first
            if evidence.count():
                target = evidence.get_attribute("href") or "#"
                evidence.click()
                seen.evidence_opens = page.evaluate(
                    """id => { const c = document.getElementById(id);
                        const r = c.getBoundingClientRect();
                        return !!c.closest('details[open]') && r.height > 0
                            && r.top < window.innerHeight && r.bottom > 0; }""",
                    target[1:],
                )
            if page.locator("#expand-all").count():
                page.click("#expand-all")
            seen.height_open = page.evaluate(_HEIGHT)
            seen.text = page.inner_text("body")
            seen.legends = page.evaluate(_LEGENDS)
            page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
            toc = page.locator("nav.toc")
            if toc.count():
                seen.toc_position = toc.evaluate("n => getComputedStyle(n).position")
                seen.toc_top_after_scroll = toc.evaluate("n => n.getBoundingClientRect().top")
            page.evaluate("() => window.scrollTo(0, 0)")
            header = page.locator("table.runs th[data-sort]").first
            if header.count():
                names = "() => Array.from(document.querySelectorAll('table.runs tbody tr'))" + (
                    ".map(r => r.cells[0].textContent.trim())"
                )
                for _ in range(2):
                    header.click()
                    seen.sorted_names.append(page.evaluate(names))
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen
