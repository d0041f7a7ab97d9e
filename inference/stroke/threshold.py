"""Ischaemic core by ADC threshold: no weights, parameters from the card.

Core = brain voxels with ``adc_floor`` <= ADC < ``adc_threshold`` (620 x 10^-6 mm²/s) whose DWI
exceeds ``dwi_ratio`` x the local DWI of normal-ADC tissue (restricted diffusion is bright at
b≈1000; T2 shine-through is bright with a normal ADC and is excluded by the ADC test, CSF by
its high ADC, background and air by their low DWI), then :func:`lesions.clean`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .channels import StrokeChannels, tissue_reference
from .lesions import clean, structure
from .params import ThresholdParams


def core_mask(ch: StrokeChannels, p: ThresholdParams) -> np.ndarray:
    """The ischaemic core of ``ch`` as a bool (z, y, x) mask on its grid."""
    ref = tissue_reference(ch, p.adc_floor, p.csf_adc, p.adc_threshold, p.reference_sigma_mm)
    cand = (ch.brain & (ch.adc >= p.adc_floor) & (ch.adc < p.adc_threshold)
            & (ch.dwi > p.dwi_ratio * ref))
    core = clean(cand, ch.brain, ch.grid, p)
    if p.boundary == "partial-volume":
        core = clean(partial_volume_boundary(core, ch, p), ch.brain, ch.grid, p)
    return core


def partial_volume_boundary(core: np.ndarray, ch: StrokeChannels, p: ThresholdParams
                            ) -> np.ndarray:
    """Re-decide each lesion's border voxels by the half-way rule on DWI signal.

    A border voxel is partly infarct and partly normal tissue. Its DWI signal is the
    volume-weighted sum of the two (signal adds linearly; ADC does not, being a log-ratio that
    the infarct's higher T2 pulls towards itself), so the voxel is more than half infarct when
    its DWI exceeds the midpoint of the nearby pure-lesion DWI (the lesion's interior) and the
    nearby normal-tissue DWI (a shell 2-3 voxels out, CSF excluded), both Gaussian-weighted
    local means (``boundary_sigma_mm``) since lesions straddle grey and white matter. Border
    voxels (within one voxel of the detected lesion, inside and out) with an ADC below
    ``adc_threshold`` + ``boundary_max_shift`` are kept or added by that rule.
    """
    labels, _ = ndimage.label(core, structure=structure(p.connectivity))
    out = np.zeros_like(core)
    ball = structure(26)
    sigma = [p.boundary_sigma_mm / s for s in ch.grid.spacing]
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        pad = tuple(slice(max(0, s.start - 4), s.stop + 4) for s in box)
        comp = labels[pad] == i
        adc, dwi, brain = ch.adc[pad], ch.dwi[pad], ch.brain[pad]
        inner = ndimage.binary_erosion(comp, structure=ball)
        if not inner.any():
            inner = comp & (dwi >= np.percentile(dwi[comp], 50))
        grow2 = ndimage.binary_dilation(comp, structure=ball, iterations=2)
        ring = (ndimage.binary_dilation(grow2, structure=ball) & ~grow2 & brain
                & (adc >= p.adc_threshold) & (adc < p.csf_adc))
        if not ring.any():
            out[pad] |= comp
            continue
        cut = (_local_mean(dwi, inner, sigma) + _local_mean(dwi, ring, sigma)) / 2
        near = ndimage.binary_dilation(comp, structure=ball)
        border = near & ~inner
        decided = border & brain & (adc >= p.adc_floor) & (
            adc < p.adc_threshold + p.boundary_max_shift) & (dwi >= cut)
        grown = inner | decided
        keep, _ = ndimage.label(grown, structure=structure(p.connectivity))
        ids = np.unique(keep[grown & comp])
        out[pad] |= np.isin(keep, ids[ids > 0])
    return out


def _local_mean(values: np.ndarray, where: np.ndarray, sigma: list[float]) -> np.ndarray:
    """Gaussian-weighted mean of ``values`` over ``where`` around each voxel (the plain median
    of ``where`` far from it)."""
    w = ndimage.gaussian_filter(where.astype(np.float32), sigma, mode="nearest")
    num = ndimage.gaussian_filter(np.where(where, values, 0).astype(np.float32), sigma,
                                  mode="nearest")
    out = np.full(values.shape, float(np.median(values[where])), dtype=np.float32)
    ok = w > 1e-3
    out[ok] = num[ok] / w[ok]
    return out


class ThresholdSegmenter:
    """The ``adc-threshold`` method: voxel probability 1 inside the core, 0 outside."""

    def __init__(self, params: ThresholdParams) -> None:
        self.params = params

    def probability(self, ch: StrokeChannels) -> np.ndarray:
        return core_mask(ch, self.params).astype(np.float32)

    def warmup(self) -> None:
        """Nothing to load."""
