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
    its DWI reaches the midpoint of the normal-tissue DWI next to it and the pure-infarct DWI
    *at the lesion's edge*. Normal tissue is a shell 2-3 voxels out (CSF excluded), its
    Gaussian-weighted local mean (``boundary_sigma_mm``), since lesions straddle grey and white
    matter. The edge infarct signal is not the interior's: diffusion restriction is deepest in
    the centre of a core and eases towards its border, so the interior mean overstates the
    edge and shrinks every lesion. It is extrapolated to the surface from the DWI over normal
    DWI of the lesion's *pure* voxels against their distance to the border (:func:`edge_ratio`).
    Pure voxels are those whose six face neighbours are lesion too: with thick slices a voxel
    one step inside the detected lesion is still partly normal (the detection keeps voxels
    well under half infarct), and such voxels pull the estimate towards the normal signal, so
    small lesions grew. The estimate is therefore made on the detected lesion, the border
    decided, and the estimate remade on the decided lesion (within the detected one)
    ``boundary_refits`` times. A remade estimate is only taken when it is higher: a purer set
    can only find a brighter infarct, a lower one means the decided lesion took in partial
    voxels, and taking it would grow the lesion further. Border voxels (within one voxel of
    the detected lesion, inside and out) are kept or added by the rule when their ADC is at
    least ``adc_floor`` and below that of the normal tissue around them (mixing in infarct
    lowers it).
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
        normal = _local_mean(dwi, ring, sigma)
        rel = dwi / normal
        near = ndimage.binary_dilation(comp, structure=ball)
        open_ = near & ~inner & brain & (adc >= p.adc_floor) & (
            adc < _local_mean(adc, ring, sigma))

        def decide(ratio: float, comp: np.ndarray = comp, inner: np.ndarray = inner,
                   open_: np.ndarray = open_, normal: np.ndarray = normal,
                   dwi: np.ndarray = dwi) -> np.ndarray:
            grown = inner | (open_ & (dwi >= normal * (1.0 + ratio) / 2))
            keep, _ = ndimage.label(grown, structure=structure(p.connectivity))
            ids = np.unique(keep[grown & comp])
            kept: np.ndarray = np.isin(keep, ids[ids > 0])
            return kept

        ratio = _pure_edge_ratio(comp, rel, ch.grid.spacing, p.boundary_fit_min_voxels)
        if ratio is None:
            ratio = float(rel[inner].mean())
        lesion = decide(ratio)
        for _ in range(p.boundary_refits):
            again = _pure_edge_ratio(lesion & comp, rel, ch.grid.spacing,
                                     p.boundary_fit_min_voxels)
            if again is None or again <= ratio:
                break
            ratio = again
            lesion = decide(ratio)
        out[pad] |= lesion
    return out


def _pure_edge_ratio(lesion: np.ndarray, rel: np.ndarray, spacing: tuple[float, ...],
                     min_voxels: int) -> float | None:
    """:func:`edge_ratio` over the voxels of ``lesion`` whose six face neighbours are in it;
    None when fewer than three are."""
    pure = ndimage.binary_erosion(lesion, structure=structure(6))
    if int(pure.sum()) < 3:
        return None
    return edge_ratio(lesion, pure, rel, spacing, min_voxels)


def edge_ratio(comp: np.ndarray, inner: np.ndarray, ratio: np.ndarray,
               spacing: tuple[float, ...], min_voxels: int) -> float:
    """The lesion's DWI / normal DWI at its surface, extrapolated from the ``inner`` voxels.

    A straight line of ``ratio`` against each inner voxel's distance (mm) to the nearest
    voxel outside ``comp`` is evaluated at the surface, half the finest voxel spacing from the
    outermost lesion voxels' neighbours. The slope is kept only when there are ``min_voxels``
    inner voxels (fewer give a noisy slope: their mean is used) and is not negative (a core is
    never taken to be brighter at its edge than inside).
    """
    dist = ndimage.distance_transform_edt(comp, sampling=spacing)[inner]
    values = ratio[inner].astype(np.float64)
    mean_d, mean_r = float(dist.mean()), float(values.mean())
    slope = 0.0
    if values.size >= max(min_voxels, 2) and float(np.ptp(dist)) > 0:
        slope = max(0.0, float(np.polyfit(dist, values, 1)[0]))
    return mean_r + slope * (min(spacing) / 2 - mean_d)


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
