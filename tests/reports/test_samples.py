"""Feature maps and filters: stored bytes -> per-map rows -> grids with the real values."""

from __future__ import annotations

import re
from typing import Any

import pytest
import vl_convert

from reports import samples
from reports.blocks import to_spec
from reports.charts.images import image_grid


def _image(data: bytes, shape: list[int], lo: list[float], hi: list[float], **kw: Any) -> Any:
    return samples.image(
        module="conv", what="feature_map", step=1, data=data, shape=shape, lo=lo, hi=hi, **kw
    )


def _rects(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The drawn pixels, as Vega's own runtime lays them out (its scenegraph)."""
    out: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("marktype") == "rect" and node.get("role") == "mark":
                out.extend(node.get("items", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(vl_convert.vegalite_to_scenegraph(spec, vl_version="6.4"))
    return out


def test_each_map_keeps_its_own_bytes_row_major_and_its_own_scale() -> None:
    data = bytes(range(12))  # two maps of 2 x 3
    image = _image(data, [2, 2, 3], lo=[-1.0, 10.0], hi=[1.0, 20.0])
    assert image.maps.select("map", "lo", "hi", "w").rows() == [
        (0, -1.0, 1.0, 3),
        (1, 10.0, 20.0, 3),
    ]
    assert image.maps["b"].to_list() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert (image.stored, image.height, image.width, image.factor) == ((2, 2, 3), 2, 3, 1)
    assert image.caption.startswith("2 maps of 2×3;")


def test_the_grid_decodes_every_pixel_to_lo_plus_byte_over_255_times_the_span() -> None:
    """End to end through Vega's runtime: each pixel's place, grey level and tooltip value."""
    pixels = [0, 1, 85, 127, 128, 170, 254, 255]  # 2 maps of 2 x 2
    lo, hi = [-1.5, 3e-4], [2.25, 7e-4]
    image = _image(bytes(pixels), [2, 2, 2], lo=lo, hi=hi)
    spec = to_spec(image_grid(maps=image.maps, height=2, width=2, title="conv", panel="channel"))
    seen = {}
    for item in _rects(spec):
        fields = dict(part.split(": ") for part in item["description"].split("; "))
        key = (int(fields["channel"]), int(fields["row"]), int(fields["column"]))
        seen[key] = (float(fields["value"].replace("\u2212", "-")), item["fill"])
    assert len(seen) == 8
    for i, byte in enumerate(pixels):
        m, row, col = i // 4, i % 4 // 2, i % 2
        expected = lo[m] + byte / 255 * (hi[m] - lo[m])
        value, fill = seen[(m, row, col)]
        assert value == pytest.approx(expected, rel=5e-6, abs=0)  # the 6 digits shown
        assert fill == f"rgb({byte}, {byte}, {byte})"
    assert samples.VALUE_EXPR in str(spec["spec"]["transform"])


def test_large_maps_are_reduced_by_block_means_and_say_so() -> None:
    h = w = 64
    data = bytes((x // 2 * 10 + y // 2) % 256 for y in range(h) for x in range(w))
    image = _image(data, [1, h, w], lo=[0.0], hi=[1.0], max_side=32)
    assert (image.height, image.width, image.factor) == (32, 32, 2)
    (b,) = image.maps["b"].to_list()
    assert len(b) == 32 * 32
    # block (row 3, column 5) holds the four bytes 5 * 10 + 3 = 53
    assert b[3 * 32 + 5] == 53
    assert "drawn at 32×32 (means of 2×2 blocks)" in image.caption


def test_at_most_max_maps_are_drawn() -> None:
    image = _image(bytes(20 * 4), [20, 2, 2], lo=[0.0] * 20, hi=[1.0] * 20)
    assert image.maps.height == samples.MAX_MAPS
    assert "the first 16 drawn" in image.caption


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"dtype": "float16"}, "dtype"),
        ({"shape": [2, 2]}, "bytes for shape"),
        ({"shape": [1, 0, 4]}, "is not [maps, height, width]"),
        ({"lo": [0.0, 1.0]}, "lo and"),
        ({"hi": [float("nan")]}, "not finite"),
    ],
)
def test_inconsistent_samples_are_refused_with_a_reason(kw: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"data": bytes(8), "shape": [1, 2, 4], "lo": [0.0], "hi": [1.0]}
    with pytest.raises(samples.SampleError, match=re.escape(reason)):
        _image(**{**args, **kw})
