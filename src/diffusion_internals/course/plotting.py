"""Image grids for the chapters: samples in [-1, 1] tiled into one picture, and the sample figures they share.

Images are ``(N, C, H, W)`` tensors in [-1, 1], C = 1 (grey) or 3 (RGB). They are clipped to [-1, 1] as a
viewer would and NaN is drawn as 0. Grey images are drawn as dark ink on white paper (matplotlib's
``gray_r`` from -1 to 1), the way the digits are printed; RGB images as they are.

* :func:`image_grid` tiles images into one canvas ``(C, H', W')``, a tensor (no matplotlib): the defaults give
  every image a light 1-pixel frame, the digits style of chapters 2 to 6.
* :func:`to_rgb` turns a canvas into an ``(H, W, 3)`` array in [0, 1] for ``imshow`` or a PNG;
  :func:`image_row` is a strip of images, each followed by a 1-pixel white gap (chapter 5).
* :func:`png_data_uri` encodes a picture as a ``data:`` URI: the frames a page embeds for a static explorer
  (chapters 1 and 5), which then needs no kernel and no file beside the page.
* :func:`draw_grid` draws a canvas on matplotlib axes.
* :func:`digit_rows` (chapters 3 and 6) and :func:`show_panels` (chapter 7) are the figures: labelled rows of
  samples, and grids side by side.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from diffusion_internals.validation import check_images, check_int, check_real

__all__ = ["DIGIT_FRAME", "image_grid", "to_rgb", "image_row", "png_data_uri", "draw_grid", "digit_rows", "show_panels"]

DIGIT_FRAME = -0.6  # the light grey (under gray_r) of the frame around each digit


def _paper(channels: int) -> float:
    """The value drawn as white: +1 in RGB, -1 for grey (dark ink on white under gray_r)."""
    return 1.0 if channels == 3 else -1.0


def image_grid(
    images: torch.Tensor, *, per_row: int | None = None, gap: int = 2, border: int = 1, fill: float = DIGIT_FRAME
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1], per_row to a row, as one canvas (C, H', W'): gap pixels apart, border around."""
    images = check_images("images", images, channels=(1, 3))
    n, c, h, w = images.shape
    per_row = n if per_row is None else check_int("per_row", per_row, minimum=1)
    gap, border = check_int("gap", gap, minimum=0), check_int("border", border, minimum=0)
    fill = check_real("fill", fill, lambda v: -1 <= v <= 1, "a value in [-1, 1]")
    rows = -(-n // per_row)
    canvas = torch.full(
        (c, 2 * border + rows * h + (rows - 1) * gap, 2 * border + per_row * w + (per_row - 1) * gap), fill
    )  # (C, H', W'); cells without an image stay fill
    for k, image in enumerate(images.detach().float().cpu().nan_to_num(0.0).clamp(-1, 1)):
        r, col = divmod(k, per_row)
        top, left = border + r * (h + gap), border + col * (w + gap)
        canvas[:, top : top + h, left : left + w] = image
    return canvas


def to_rgb(canvas: torch.Tensor) -> np.ndarray:
    """A canvas (C, H, W) in [-1, 1] as an (H, W, 3) float array in [0, 1]: RGB as is, grey as dark ink on white."""
    if not isinstance(canvas, torch.Tensor) or canvas.ndim != 3 or canvas.shape[0] not in (1, 3):
        raise ValueError(
            f"canvas must be a tensor (C, H, W) with C = 1 or 3, got "
            f"{tuple(canvas.shape) if isinstance(canvas, torch.Tensor) else type(canvas).__name__}"
        )
    x = (canvas.detach().float().cpu().clamp(-1, 1) + 1) / 2  # (C, H, W) in [0, 1]
    if canvas.shape[0] == 1:
        x = (1 - x).expand(3, -1, -1)  # gray_r: -1 is white
    return x.permute(1, 2, 0).numpy()  # (H, W, 3)


def image_row(images: torch.Tensor) -> np.ndarray:
    """Images (B, C, H, W) in [-1, 1] in a row, each followed by a 1-pixel white gap: (H, B (W + 1), 3) in [0, 1]."""
    images = check_images("images", images, channels=(1, 3))
    gapped = torch.nn.functional.pad(images.detach().float(), (0, 1), value=_paper(images.shape[1]))  # (B, C, H, W + 1)
    return to_rgb(image_grid(gapped, gap=0, border=0))


def png_data_uri(picture: np.ndarray) -> str:
    """A picture (H, W) grey or (H, W, 3) RGB in [0, 1] as the data: URI of an 8-bit PNG, for a page's own <img>.

    The browser enlarges it (CSS ``image-rendering: pixelated``), so frames stay a few hundred bytes each.
    """
    picture = np.asarray(picture, dtype=np.float64)
    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[2] != 3):
        raise ValueError(f"picture must be (H, W) or (H, W, 3), got shape {picture.shape}")
    if not np.isfinite(picture).all() or picture.min() < 0 or picture.max() > 1:
        raise ValueError(f"picture must hold values in [0, 1], got [{picture.min()}, {picture.max()}]")
    buffer = io.BytesIO()
    Image.fromarray(np.round(picture * 255).astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def draw_grid(ax: plt.Axes, canvas: torch.Tensor) -> None:
    """Draw a canvas (C, H, W) in [-1, 1] on ax: grey as dark ink on white (gray_r), RGB as is; no grid lines."""
    if isinstance(canvas, torch.Tensor) and canvas.ndim == 3 and canvas.shape[0] == 1:
        ax.imshow(canvas[0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
    else:
        ax.imshow(to_rgb(canvas))
    ax.grid(False)


def digit_rows(rows: Mapping[str, torch.Tensor], title: str, *, scale: float = 0.55, label_width: float = 2.2) -> None:
    """Rows of framed images, each a (n, C, H, W) tensor in [-1, 1], labelled on the left; shown with plt.show()."""
    if not isinstance(rows, Mapping) or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty dict from row label to images (n, C, H, W), got {rows!r}")
    shapes = {
        tuple(check_images(f"rows[{label!r}]", images, channels=(1, 3)).shape[1:]) for label, images in rows.items()
    }
    if len(shapes) > 1:
        raise ValueError(f"rows must hold images of one shape (C, H, W), got {sorted(shapes)}")
    (c, h, w), n = shapes.pop(), max(len(images) for images in rows.values())
    # A short row is padded with blank cells, drawn in the frame colour.
    padded = [
        torch.cat([images.detach().float().cpu(), torch.full((n - len(images), c, h, w), DIGIT_FRAME)])
        for images in rows.values()
    ]
    fig, ax = plt.subplots(figsize=(scale * n + label_width, scale * len(rows) + 0.7))
    draw_grid(ax, image_grid(torch.cat(padded), per_row=n))  # (C, R (H + 2), n (W + 2))
    ax.set_yticks(np.arange(len(rows)) * (h + 2) + 1 + (h - 1) / 2, list(rows), fontsize=8)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plt.show()


def show_panels(panels: Mapping[str, torch.Tensor], title: str, *, per_row: int = 10) -> None:
    """Grids of images side by side, each a (n, C, H, W) tensor in [-1, 1] with 1-pixel white gaps; plt.show()."""
    if not isinstance(panels, Mapping) or len(panels) == 0:
        raise ValueError(f"panels must be a non-empty dict from title to images (n, C, H, W), got {panels!r}")
    grids = {
        name: image_grid(
            check_images(f"panels[{name!r}]", images, channels=(1, 3)),
            per_row=per_row,
            gap=1,
            border=1,
            fill=_paper(images.shape[1]),
        )
        for name, images in panels.items()
    }
    _, canvas_h, canvas_w = next(iter(grids.values())).shape
    fig, axes = plt.subplots(1, len(grids), figsize=(3.3 * len(grids), 3.3 * canvas_h / canvas_w + 0.7))
    for ax, (name, canvas) in zip(np.atleast_1d(axes), grids.items()):
        draw_grid(ax, canvas)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
