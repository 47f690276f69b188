"""The inlined JavaScript: one bundle, Vega-Lite matching Altair's, safe inside <script>."""

from __future__ import annotations

import altair as alt

from reports.assets import _script_safe, javascript_bundle


def test_bundle_defines_vega_embed_and_is_built_once() -> None:
    bundle = javascript_bundle()
    assert "window.vegaEmbed=" in bundle
    assert javascript_bundle() is bundle
    assert "</script" not in bundle.lower()


def test_bundle_carries_the_vega_lite_version_altair_writes() -> None:
    assert alt.VEGALITE_VERSION in javascript_bundle()


def test_script_end_tags_inside_the_code_are_broken_up() -> None:
    assert _script_safe('s = "</SCRIPT>" + "</script x"') == 's = "<\\/SCRIPT>" + "<\\/script x"'
    assert _script_safe("a < b") == "a < b"
