"""Images for the ``samples`` stream, the way TensorBoard makes them.

``image_maps`` turns an image tensor of any of TensorBoard's ``dataformats`` into
uint8 ``[maps, H, W]`` (one map per channel, a batch's maps one after the other),
scaled as ``torch.utils.tensorboard`` scales: uint8 as it is, anything else times
255, clipped to [0, 255] and truncated (NaN as 0). Stored with ``lo = 0`` and
``hi = 1`` per map, the value of a byte is TensorBoard's float pixel, ``byte / 255``.
``render_figure`` draws a matplotlib figure on the Agg canvas, as TensorBoard's
``add_figure`` does.
"""

from __future__ import annotations

from typing import Any

import torch

from store.errors import ConfigError


def image_maps(t: torch.Tensor, dataformats: str, *, batch: bool, tag: str) -> torch.Tensor:
    """uint8 ``[maps, H, W]``: TensorBoard's scaling (uint8 as is, else x 255, clipped)."""
    fmt = dataformats.upper() if isinstance(dataformats, str) else ""
    allowed = ("NCHW", "NHWC", "NHW") if batch else ("CHW", "HWC", "HW")
    if fmt not in allowed:
        raise ConfigError(
            f"image {tag!r}: dataformats {dataformats!r}; expected one of {', '.join(allowed)}"
        )
    if t.dim() != len(fmt):
        raise ConfigError(
            f"image {tag!r}: a {t.dim()}-d tensor of shape {tuple(t.shape)} for dataformats {fmt!r}"
        )
    if "C" not in fmt:
        t, fmt = t.unsqueeze(-3), fmt[:-2] + "CHW"
    t = t.permute(*[fmt.index(c) for c in ("NCHW" if batch else "CHW")]).detach().cpu()
    if t.dtype != torch.uint8:
        t = torch.nan_to_num(t.double() * 255, nan=0.0).clamp(0, 255).to(torch.uint8)
    return t.reshape(-1, t.shape[-2], t.shape[-1])


def render_figure(figure: Any, *, close: bool) -> torch.Tensor:
    """A matplotlib figure as uint8 ``[H, W, 3]`` (the Agg canvas, as TensorBoard renders it)."""
    try:
        # Imported here: matplotlib costs ~0.3 s and only add_figure needs it.
        from matplotlib import pyplot as plt
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError as e:
        raise ConfigError("add_figure needs matplotlib (pip install matplotlib)") from e
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8)
    width, height = canvas.get_width_height()
    image = rgba.reshape(height, width, 4)[:, :, :3].clone()
    if close:
        plt.close(figure)
    return image
