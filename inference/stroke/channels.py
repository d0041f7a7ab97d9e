"""DWI and ADC of one study on one grid, the brain mask and the tissue reference.

ADC is computed when only b0 and DWI are given: ADC = -ln(S_b / S_0) / b (Stejskal-Tanner;
stored x 10^6 as in DICOM ADC maps). Maps stored in mm²/s or 10^-3 mm²/s are recognised from
the brain's median and rescaled to 10^-6 mm²/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..types import StudyInput, Volume

# Plausible median ADC of brain tissue (grey + white matter + some CSF), 10^-6 mm²/s.
_BRAIN_ADC_RANGE = (300.0, 2000.0)


@dataclass(frozen=True)
class StrokeChannels:
    """The arrays a stroke method works on, all (z, y, x) float32 on the grid of ``grid``."""

    grid: Volume
    dwi: np.ndarray
    adc: np.ndarray
    brain: np.ndarray
    midline_x: float
    adc_computed: bool


def adc_from_b0(b0: np.ndarray, dwi: np.ndarray, b_value: float) -> np.ndarray:
    """ADC in 10^-6 mm²/s from b0 and one diffusion-weighted image of b-value ``b_value`` (s/mm²);
    0 where either signal is not positive (background), clipped to [0, 5000]."""
    if b_value <= 0:
        raise InputError(f"b-value must be positive, got {b_value}")
    s0 = np.asarray(b0, dtype=np.float64)
    sb = np.asarray(dwi, dtype=np.float64)
    ok = (s0 > 0) & (sb > 0)
    adc = np.zeros(s0.shape, dtype=np.float64)
    adc[ok] = -np.log(sb[ok] / s0[ok]) / b_value * 1e6
    return np.clip(adc, 0.0, 5000.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (IEEE SMC 1979) of ``values``: maximal between-class variance."""
    v = values[np.isfinite(values)]
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def brain_mask(dwi: np.ndarray, min_fraction: float = 0.1) -> np.ndarray:
    """Brain parenchyma (and the CSF it encloses) from a b≈1000 DWI.

    Tissue is DWI above Otsu's threshold (background and CSF are dark at b≈1000); components
    smaller than ``min_fraction`` of the largest (scalp and EPI artefacts) are dropped, then holes
    are filled slice by slice (ventricles). Raises InputError when no tissue is found.
    """
    t = otsu_threshold(dwi)
    fg = ndimage.binary_opening(dwi > t, structure=np.ones((1, 3, 3), dtype=bool))
    labels, n = ndimage.label(fg)
    if n == 0:
        raise InputError("no brain tissue found in the DWI")
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    brain = np.isin(labels, keep)
    for k in range(brain.shape[0]):
        brain[k] = ndimage.binary_fill_holes(brain[k])
    return brain


def lps_x(grid: Volume, zyx: np.ndarray) -> np.ndarray:
    """Patient x (LPS, +x = patient left; PS3.3 C.7.6.2.1.1) of (n, 3) voxel indices."""
    row = grid.affine[0]
    return np.asarray(zyx, dtype=np.float64) @ row[:3] + row[3]


def _normalise_adc(adc: np.ndarray, brain: np.ndarray) -> np.ndarray:
    med = float(np.median(adc[brain])) if brain.any() else 0.0
    for scale in (1.0, 1e3, 1e6):
        if _BRAIN_ADC_RANGE[0] <= med * scale <= _BRAIN_ADC_RANGE[1]:
            return adc * np.float32(scale) if scale != 1.0 else adc
    raise InputError(f"ADC map not in a known unit: brain median {med:.4g}, expected "
                     f"{_BRAIN_ADC_RANGE[0]:.0f}-{_BRAIN_ADC_RANGE[1]:.0f} x 10^-6 mm²/s")


def stroke_channels(inp: StudyInput, b_value: float = 1000.0) -> StrokeChannels:
    """DWI, ADC (given, or computed from ``b0``), brain mask and mid-sagittal plane.

    Raises:
        InputError: no DWI; no ADC and no b0; an ADC map in an unknown unit; no brain found.
    """
    vols = inp.volumes
    if "dwi" not in vols:
        raise InputError("no DWI (b≈1000) volume in the input")
    dwi = np.asarray(vols["dwi"].array, dtype=np.float32)
    if "adc" in vols:
        adc, computed = np.asarray(vols["adc"].array, dtype=np.float32), False
    elif "b0" in vols:
        adc, computed = adc_from_b0(vols["b0"].array, dwi, b_value), True
    else:
        raise InputError("no ADC and no b0")
    brain = brain_mask(dwi)
    adc = _normalise_adc(adc, brain)
    zyx = np.argwhere(brain)
    midline = float(lps_x(vols["dwi"], zyx.mean(axis=0, keepdims=True))[0])
    return StrokeChannels(grid=vols["dwi"], dwi=dwi, adc=adc, brain=brain, midline_x=midline,
                          adc_computed=computed)


def tissue_reference(ch: StrokeChannels, adc_floor: float, csf_adc: float,
                     adc_normal: float, sigma_mm: float) -> np.ndarray:
    """The DWI of normal tissue around each voxel: the Gaussian-weighted (``sigma_mm``) mean DWI
    of brain voxels with ``adc_normal`` <= ADC < ``csf_adc`` (lesions, CSF and failed fits
    excluded), so a smooth coil bias cancels in DWI / reference. Float32 (z, y, x), positive.

    Raises:
        InputError: no brain voxel has a normal ADC, or their DWI is not positive.
    """
    sel = ch.brain & (ch.adc >= max(adc_floor, adc_normal)) & (ch.adc < csf_adc)
    if not sel.any():
        raise InputError("no brain tissue with a normal ADC")
    glob = float(np.median(ch.dwi[sel]))
    if glob <= 0:
        raise InputError("brain DWI signal is not positive")
    sigma = [sigma_mm / s for s in ch.grid.spacing]
    w = ndimage.gaussian_filter(sel.astype(np.float32), sigma, mode="constant")
    num = ndimage.gaussian_filter(np.where(sel, ch.dwi, 0).astype(np.float32), sigma,
                                  mode="constant")
    # Far from any normal tissue the weights vanish: fall back to the global median there.
    enough = w > 0.05
    ref = np.full(ch.dwi.shape, glob, dtype=np.float32)
    ref[enough] = num[enough] / w[enough]
    return np.maximum(ref, np.float32(glob * 0.2))


def option_b_value(options: dict[str, Any]) -> float:
    """The ``b_value`` option (s/mm²), 1000 by default."""
    return float(options.get("b_value", 1000.0))
