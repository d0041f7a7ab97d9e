"""ICH preprocessing: model grid, thick slabs, CT windows as channels, 2.5D context.

Order matters for memory, not for values: in-plane area resampling and slab averaging are both
linear, so the volume is shrunk in-plane first (in chunks) and only then averaged along z. The
windows (non-linear) come last, on the small array, exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..cards import InputSpec
from ..errors import InputError

AIR_HU = -1000.0
_CHUNK = 32


@dataclass(frozen=True)
class Prepared:
    """Model input and how it maps back to the input volume.

    ``inputs`` (m, C, H, W); ``slab_of_slice`` (n,) gives the slab of each input slice;
    ``slab_center`` (m,) the input slice at the centre of each slab; ``content`` the
    (top, left, height, width) of the image inside the padded model grid.
    """

    inputs: torch.Tensor
    slab_of_slice: np.ndarray
    slab_center: np.ndarray
    content: tuple[int, int, int, int]
    original_hw: tuple[int, int]


def slab_size(slice_mm: float, target_mm: float | None) -> int:
    """Input slices per model slab: thin reconstructions are averaged into thick slabs."""
    if target_mm is None or slice_mm >= 0.75 * target_mm:
        return 1
    return max(1, int(round(target_mm / slice_mm)))


def resample_inplane(array: np.ndarray, matrix: tuple[int, int]) -> tuple[torch.Tensor, tuple]:
    """Area-resample (z, y, x) slices into ``matrix``, keeping aspect ratio, padding with air.

    Returns the (z, H, W) float32 tensor and the content box (top, left, height, width).
    """
    z, h, w = array.shape
    scale = min(matrix[0] / h, matrix[1] / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (matrix[0] - nh) // 2, (matrix[1] - nw) // 2
    out = torch.full((z, *matrix), AIR_HU, dtype=torch.float32)
    for z0 in range(0, z, _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(array[z0 : z0 + _CHUNK])).float()
        small = F.interpolate(chunk[:, None], size=(nh, nw), mode="area")[:, 0]
        out[z0 : z0 + _CHUNK, top : top + nh, left : left + nw] = small
    return out, (top, left, nh, nw)


def windows(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(m, H, W) HU -> (m, n_windows, H, W) in [0, 1], one channel per card window."""
    chans = [((x - (w.center - w.width / 2)) / w.width).clamp_(0, 1) for w in spec.windows]
    return torch.stack(chans, dim=1)


def to_slabs(array: np.ndarray, spacing: tuple[float, float, float], spec: InputSpec
             ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Resample in-plane to the model grid and average thin slices into slabs.

    Returns HU slabs (m, H, W), the slab of each input slice, the centre input slice of each
    slab, and the content box inside the padded grid.

    Raises:
        InputError: the volume is empty or its slices are too small to be a head CT.
    """
    n, h, w = array.shape
    if n < 1 or min(h, w) < 32:
        raise InputError(f"volume of shape {array.shape} is too small for this model")
    small, content = resample_inplane(array, spec.matrix)
    k = slab_size(spacing[0], spec.slice_spacing_mm)
    m = -(-n // k)
    slab_of_slice = np.arange(n) // k
    if k > 1:
        sums = torch.zeros((m, *spec.matrix), dtype=torch.float32)
        sums.index_add_(0, torch.from_numpy(slab_of_slice), small)
        counts = torch.bincount(torch.from_numpy(slab_of_slice), minlength=m).float()
        small = sums / counts[:, None, None]
    slab_center = np.minimum(np.arange(m) * k + k // 2, n - 1)
    return small, slab_of_slice, slab_center, content


def stack_context(win: torch.Tensor, context: int) -> torch.Tensor:
    """(m, W, H, W) windowed slabs -> (m, W * (2c+1), H, W): neighbours first to last, edge
    slabs repeated at the ends of the volume."""
    m = win.shape[0]
    idx = torch.arange(m)
    return torch.cat([win[(idx + off).clamp(0, m - 1)] for off in range(-context, context + 1)],
                     dim=1)


def prepare(array: np.ndarray, spacing: tuple[float, float, float], spec: InputSpec) -> Prepared:
    """Turn a (z, y, x) HU volume into model input per :class:`InputSpec`.

    Raises:
        InputError: the volume is unusable or the card declares no windows.
    """
    if not spec.windows:
        raise InputError("model card declares no input windows")
    small, slab_of_slice, slab_center, content = to_slabs(array, spacing, spec)
    inputs = stack_context(windows(small, spec), spec.context_slices)
    return Prepared(inputs=inputs, slab_of_slice=slab_of_slice, slab_center=slab_center,
                    content=content, original_hw=(array.shape[1], array.shape[2]))


def to_input_plane(heat: torch.Tensor, prep: Prepared) -> np.ndarray:
    """Map a (H, W) model-grid map back onto the input slice plane (y, x)."""
    top, left, nh, nw = prep.content
    crop = heat[top : top + nh, left : left + nw][None, None]
    full = F.interpolate(crop.float(), size=prep.original_hw, mode="bilinear", align_corners=False)
    return full[0, 0].numpy()
