"""Radiograph to network input: resize (long side to the working size), normalise, pad.

The resize uses pixel-edge alignment: working pixel edge ``u`` is input pixel edge
``u / scale`` on each axis, with ``scale`` = working extent / input extent per axis, so a box
maps back exactly by dividing by the scales (PS3.3 C.18.6.1.2 pixel coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass(frozen=True)
class Working:
    """One image on the model's grid: ``array`` (size, size) in [0, 1], zero padded below and
    right; ``extent`` the (rows, cols) holding image; ``scale`` (row, col) working / input."""

    array: np.ndarray
    extent: tuple[int, int]
    scale: tuple[float, float]


def working_extent(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(rows, cols) of the resized image: long side ``size``, aspect ratio kept."""
    rows, cols = shape
    k = size / max(rows, cols)
    return max(1, min(size, int(round(rows * k)))), max(1, min(size, int(round(cols * k))))


def normalise(img: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Map the (low, high) percentiles of the image to 0 and 1 and clip: robust to bit depth,
    offset, gain and burned-in saturated text."""
    lo, hi = np.percentile(img, percentiles)
    if not np.isfinite([lo, hi]).all():
        raise InputError("radiograph has non-finite pixel values")
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_working(array: np.ndarray, size: int, percentiles: tuple[float, float]) -> Working:
    """Resize (antialiased when shrinking), normalise and pad one image."""
    rows, cols = int(array.shape[0]), int(array.shape[1])
    h, w = working_extent((rows, cols), size)
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if (h, w) != (rows, cols):
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False,
                          antialias=h < rows or w < cols)
    small = normalise(t[0, 0].numpy(), percentiles)
    out = np.zeros((size, size), dtype=np.float32)
    out[:h, :w] = small
    return Working(array=out, extent=(h, w), scale=(h / rows, w / cols))


def box_to_input(box: tuple[float, float, float, float], work: Working,
                 shape: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """A working-grid box (x0, y0, x1, y1) in input pixel coordinates, clipped to the image;
    None when nothing of it lies inside."""
    sy, sx = work.scale
    rows, cols = shape
    x0 = min(max(box[0] / sx, 0.0), float(cols))
    x1 = min(max(box[2] / sx, 0.0), float(cols))
    y0 = min(max(box[1] / sy, 0.0), float(rows))
    y1 = min(max(box[3] / sy, 0.0), float(rows))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return (x0, y0, x1, y1)
