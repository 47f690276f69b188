"""The JavaScript a report inlines: Vega, Vega-Lite and Vega-Embed in one bundle.

A report is mailed and opened from ``file://``, often offline, so nothing may be
fetched from a CDN. ``vl_convert`` ships the libraries and bundles them into one
script (~0.9 MB) that defines ``vegaEmbed``, ``vega`` and ``vegaLite`` globally.
Bundling takes ~3 s, so it is done once per process.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
"""The bundle's entry snippet (vl-convert's default, spelled out): the page calls ``vegaEmbed``."""


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """The inline-able Vega + Vega-Lite + Vega-Embed bundle, for the Vega-Lite Altair writes.

    Safe to place between ``<script>`` and ``</script>``: any ``</script`` inside
    the libraries' strings is written ``<\\/script``, which JavaScript reads the same.
    """
    import altair as alt  # deferred: ~0.5 s, and only a page with charts needs it
    import vl_convert

    wanted = ".".join(alt.VEGALITE_VERSION.split(".")[:2])  # "6.4.1" -> "6.4"
    supported = vl_convert.get_vegalite_versions()
    version = wanted if wanted in supported else None
    if version is None:
        log.warning(
            "vl-convert %s bundles Vega-Lite %s but not %s (Altair's); using its latest",
            getattr(vl_convert, "__version__", "?"),
            ", ".join(supported),
            wanted,
        )
    bundle = vl_convert.javascript_bundle(_GLOBALS, vl_version=version)
    return _script_safe(bundle)


def _script_safe(js: str) -> str:
    """``js`` with every ``</script`` (any case) broken up so it cannot end the script element."""
    lowered = js.lower()
    if "</script" not in lowered:
        return js
    out, start = [], 0
    while (i := lowered.find("</script", start)) >= 0:
        out.append(js[start:i] + "<\\/")
        start = i + 2
    out.append(js[start:])
    return "".join(out)
