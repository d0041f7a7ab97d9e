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

_T2_B_VALUE = 1e-3
"""b-value (10^6 s/mm² per 10^-6 mm²/s of ADC) that turns DWI and ADC back into the b=0 signal
for :func:`edge_signal`; the b≈1000 the method assumes. Only the ratio of DWI to this signal's
local mean is used, so a different b-value scales it and the lesion's small ADC spread alone
matters."""


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
    the centre of a core and eases towards its border, so the interior mean overstates the edge
    and shrinks every lesion. It is extrapolated to the surface from the DWI over normal DWI of
    the lesion's *pure* voxels against their distance to the border (:func:`edge_ratio`); on a
    lesion with enough pure voxels it is taken over the infarct's own local T2 (b=0) signal
    instead of the normal DWI, which gives the grey- and white-matter parts of a straddling
    lesion each their own edge value (:func:`edge_signal`). Pure voxels are those whose six face
    neighbours are lesion too: with thick slices a voxel one step inside the detected lesion is
    still partly normal (the detection keeps voxels well under half infarct), and such voxels
    pull the estimate towards the normal signal, so small lesions grew. The estimate is
    therefore made on the detected lesion, the border decided, and the estimate remade on the
    decided lesion (within the detected one) ``boundary_refits`` times. A remade estimate is
    only taken when it is higher (its mean): a purer set can only find a brighter infarct, a
    lower one means the decided lesion took in partial voxels, and taking it would grow the
    lesion further. Border voxels (within one voxel of the detected lesion, inside and out) are
    kept or added by the rule when their ADC is at least ``adc_floor`` and below that of the
    normal tissue around them (mixing in infarct lowers it).
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

        s0 = dwi * np.exp(_T2_B_VALUE * adc.astype(np.float32))
        t2_sigma = [p.boundary_t2_sigma_mm / s for s in ch.grid.spacing]

        def decide(edge: np.ndarray, comp: np.ndarray = comp, inner: np.ndarray = inner,
                   open_: np.ndarray = open_, normal: np.ndarray = normal,
                   dwi: np.ndarray = dwi) -> np.ndarray:
            grown = inner | (open_ & (dwi >= (normal + edge) / 2))
            keep, _ = ndimage.label(grown, structure=structure(p.connectivity))
            ids = np.unique(keep[grown & comp])
            kept: np.ndarray = np.isin(keep, ids[ids > 0])
            return kept

        def edge_of(lesion: np.ndarray, normal: np.ndarray = normal, dwi: np.ndarray = dwi,
                    s0: np.ndarray = s0, t2_sigma: list[float] = t2_sigma
                    ) -> np.ndarray | None:
            return edge_signal(lesion, dwi, normal, s0, ch.grid.spacing, t2_sigma,
                               p.boundary_fit_min_voxels, p.boundary_t2_min_voxels)

        edge = edge_of(comp)
        if edge is None:
            edge = normal * float(rel[inner].mean())
        lesion = decide(edge)
        for _ in range(p.boundary_refits):
            again = edge_of(lesion & comp)
            if again is None or float(again.mean()) <= float(edge.mean()):
                break
            edge = again
            lesion = decide(edge)
        out[pad] |= lesion
    return out


def edge_signal(lesion: np.ndarray, dwi: np.ndarray, normal: np.ndarray, s0: np.ndarray,
                spacing: tuple[float, ...], t2_sigma: list[float], min_voxels: int,
                t2_min_voxels: int) -> np.ndarray | None:
    """The pure-infarct DWI at the lesion's edge, per voxel; None when fewer than three voxels
    of ``lesion`` have all six face neighbours in it (pure voxels).

    With at least ``t2_min_voxels`` pure voxels the infarct's own T2 signal sets the scale:
    ``s0`` (DWI x exp(b ADC), the b=0 signal) averaged over the pure voxels near each voxel
    (Gaussian, ``t2_sigma`` in voxels). Infarct in grey matter carries grey matter's longer T2,
    so its DWI is higher than infarct in white matter; the normal-tissue reference alone does not
    tell the two apart where a lesion straddles them. The edge value is that local infarct T2
    signal times the :func:`edge_ratio` of DWI over it (the diffusion weighting at the edge).
    With fewer pure voxels the local T2 mean is too noisy and the edge is the normal-tissue DWI
    times the :func:`edge_ratio` of DWI over normal DWI."""
    pure = ndimage.binary_erosion(lesion, structure=structure(6))
    n = int(pure.sum())
    if n < 3:
        return None
    if n < t2_min_voxels:
        return normal * edge_ratio(lesion, pure, dwi / normal, spacing, min_voxels)
    t2 = _local_mean(s0, pure, t2_sigma)
    return t2 * edge_ratio(lesion, pure, dwi / t2, spacing, min_voxels)


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
