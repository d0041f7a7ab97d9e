"""Input quality gate before inference: is this volume one the model can be trusted on?

Measures, each compared with its threshold in the model card's ``quality`` section
(:class:`inference.cards.QualitySpec`; a check without a threshold is not applied):

- slice count and slice spacing (a scout or a partial acquisition; slabs too thick);
- anatomy coverage: the head-foot extent of the slices that show the body part;
- intensity range: the foreground's median and the background level (the 0.1th percentile;
  CT: air at about -1000 HU, so a missing or wrong rescale shows here);
- metal: the share of foreground voxels above the metal level (CT);
- noise: a robust in-plane noise estimate in the foreground interior (median absolute
  deviation of a 3 x 3 high-pass, scaled to a Gaussian's sigma);
- motion: the largest in-plane jump of the foreground's centre between adjacent slices (a head
  that moved between slices jumps; anatomy alone moves its centre smoothly).

Radiographs are gated one image at a time by :func:`assess_radiograph`: matrix size, usable
dynamic range against the stored bit depth, and the share of clipped pixels.

A failed check does not stop the pipeline: the runner answers "indeterminate — read as usual"
with the reasons, so that a scan the model should not judge is never reported as negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .cards import QualitySpec
from .types import Volume

_MIN_SLICE_FOREGROUND = 0.02
"""Share of a slice's pixels that must be foreground for the slice to count as covering it."""
_MOTION_AREA = 0.5
"""Motion is measured between slices whose foreground is at least this share of the largest."""
_MAD_TO_SIGMA = 1.4826
_HIGHPASS_GAIN = float(np.sqrt(1.0 + 1.0 / 8.0))
"""Sigma of x - mean of its 8 neighbours, for white noise of sigma 1."""


@dataclass(frozen=True)
class QualityReport:
    """What the gate measured (``measures``, rounded) and why it failed (``reasons``, empty
    when it passed)."""

    measures: dict[str, float]
    reasons: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.reasons


def foreground(array: np.ndarray, spec: QualitySpec) -> np.ndarray:
    """Boolean mask of the imaged body part."""
    if spec.foreground_relative:
        level = spec.foreground * float(np.percentile(array, 99))
        return np.asarray(array > level)
    return np.asarray(array > spec.foreground)


def coverage_mm(fg: np.ndarray, slice_mm: float) -> float:
    """Head-foot extent (mm) from the first to the last slice that shows the body part."""
    shown = np.flatnonzero(fg.reshape(fg.shape[0], -1).mean(axis=1) >= _MIN_SLICE_FOREGROUND)
    return 0.0 if shown.size == 0 else float(shown[-1] - shown[0] + 1) * slice_mm


def noise_sigma(array: np.ndarray, interior: np.ndarray) -> float:
    """Robust noise sigma of `array` inside `interior`: MAD of an in-plane 3 x 3 high-pass.

    Smooth anatomy cancels in the high-pass; edges are few and the median ignores them.
    """
    x = array.astype(np.float32, copy=False)
    local = ndimage.uniform_filter(x, size=(1, 3, 3), mode="nearest")
    highpass = (x - local) * (9.0 / 8.0)  # x minus the mean of its 8 neighbours
    values = highpass[interior]
    if values.size < 100:
        return float("nan")
    mad = float(np.median(np.abs(values - np.median(values))))
    return mad * _MAD_TO_SIGMA / _HIGHPASS_GAIN


def motion_mm(fg: np.ndarray, pixel_mm: tuple[float, float]) -> float:
    """Largest in-plane jump (mm) of the foreground centre between adjacent slices, over the
    slices whose foreground is at least half the largest one's."""
    area = fg.reshape(fg.shape[0], -1).sum(axis=1).astype(np.float64)
    if area.max(initial=0) <= 0:
        return 0.0
    big = area >= _MOTION_AREA * area.max()
    ys = np.arange(fg.shape[1], dtype=np.float64)[:, None]
    xs = np.arange(fg.shape[2], dtype=np.float64)[None, :]
    worst = 0.0
    prev: tuple[float, float] | None = None
    for k in range(fg.shape[0]):
        if not big[k]:
            prev = None
            continue
        sl = fg[k]
        n = float(area[k])
        centre = (float((sl * ys).sum()) / n * pixel_mm[0],
                  float((sl * xs).sum()) / n * pixel_mm[1])
        if prev is not None:
            worst = max(worst, float(np.hypot(centre[0] - prev[0], centre[1] - prev[1])))
        prev = centre
    return worst


def assess(volume: Volume, spec: QualitySpec) -> QualityReport:
    """Measure `volume` and compare with the card's thresholds; see the module docstring."""
    arr = volume.array
    n = int(arr.shape[0])
    dz, dy, dx = (float(v) for v in volume.spacing)
    measures: dict[str, float] = {"slices": n, "slice_spacing_mm": round(dz, 3)}
    reasons: list[str] = []
    if spec.min_slices is not None and n < spec.min_slices:
        reasons.append(f"{n} slices, at least {spec.min_slices} needed")
    if spec.max_slice_spacing_mm is not None and dz > spec.max_slice_spacing_mm:
        reasons.append(f"slice spacing {dz:.1f} mm, at most {spec.max_slice_spacing_mm:g} mm "
                       f"allowed")
    low = float(np.percentile(arr, 0.1))
    measures["background"] = round(low, 2)
    if spec.background_range is not None and not (
            spec.background_range[0] <= low <= spec.background_range[1]):
        reasons.append(f"background intensity {low:.0f} outside the expected "
                       f"{spec.background_range[0]:g} to {spec.background_range[1]:g} (wrong "
                       f"rescale?)")
    fg = foreground(arr, spec)
    cover = coverage_mm(fg, dz)
    measures["coverage_mm"] = round(cover, 1)
    if spec.min_coverage_mm is not None and cover < spec.min_coverage_mm:
        reasons.append(f"the images cover {cover:.0f} mm of the anatomy, at least "
                       f"{spec.min_coverage_mm:g} mm needed")
    if not fg.any():
        reasons.append("no anatomy found in the images")
        return QualityReport(measures, tuple(reasons))
    median = float(np.median(arr[fg]))
    measures["foreground_median"] = round(median, 2)
    if spec.intensity_range is not None and not (
            spec.intensity_range[0] <= median <= spec.intensity_range[1]):
        reasons.append(f"intensities outside the expected range (median {median:.0f}, "
                       f"expected {spec.intensity_range[0]:g} to {spec.intensity_range[1]:g})")
    if spec.max_metal_fraction is not None:
        metal = float((arr[fg] > spec.metal_above).mean())
        measures["metal_fraction"] = round(metal, 6)
        if metal > spec.max_metal_fraction:
            reasons.append(f"metal artefact ({metal:.2%} of the anatomy above "
                           f"{spec.metal_above:g}, at most {spec.max_metal_fraction:.2%})")
    if spec.max_noise is not None:
        noise = _noise(arr, fg, spec, median)
        measures["noise"] = round(noise, 4)
        if np.isfinite(noise) and noise > spec.max_noise:
            reasons.append(f"image noise {noise:.3g} above the model's limit "
                           f"{spec.max_noise:g}")
    if spec.max_motion_mm is not None:
        motion = motion_mm(fg, (dy, dx))
        measures["motion_mm"] = round(motion, 2)
        if motion > spec.max_motion_mm:
            reasons.append(f"patient motion between slices ({motion:.1f} mm jump, at most "
                           f"{spec.max_motion_mm:g} mm)")
    return QualityReport(measures, tuple(reasons))


def _noise(arr: np.ndarray, fg: np.ndarray, spec: QualitySpec, median: float) -> float:
    interior = ndimage.binary_erosion(fg, structure=np.ones((1, 5, 5), bool))
    if spec.foreground_relative:
        sigma = noise_sigma(arr, interior)
        return sigma / median if median > 0 else float("inf")
    lo, hi = spec.noise_window
    soft = interior & (arr >= lo) & (arr <= hi)
    # keep away from bone: the high-pass rings at the skull's edges
    soft = ndimage.binary_erosion(soft, structure=np.ones((1, 3, 3), bool))
    return noise_sigma(arr, soft)


def assess_radiograph(pixels: np.ndarray, bits_stored: int | None,
                      spec: QualitySpec) -> QualityReport:
    """Gate for one radiograph (``pixels`` as :class:`inference.types.Radiograph` holds them):
    its matrix (``min_matrix``), its usable dynamic range (the 1st to 99th percentile as a share
    of ``2^bits_stored - 1``; of the image's own full range when the bit depth is unknown:
    ``min_dynamic_range``) and its clipped share (pixels at the lowest or at the highest value,
    the larger: ``max_clipped_fraction``). The volume checks of :func:`assess` do not apply."""
    arr = np.asarray(pixels, dtype=np.float64)
    rows, cols = (int(v) for v in arr.shape[:2])
    measures: dict[str, float] = {"rows": rows, "columns": cols}
    reasons: list[str] = []
    if spec.min_matrix is not None and min(rows, cols) < spec.min_matrix:
        reasons.append(f"image of {rows} x {cols} pixels, at least {spec.min_matrix} rows "
                       f"and columns needed")
    if arr.size == 0 or not np.isfinite(arr).all():
        reasons.append("no usable pixel values")
        return QualityReport(measures, tuple(reasons))
    low, high = float(arr.min()), float(arr.max())
    if spec.min_dynamic_range is not None:
        p1, p99 = (float(v) for v in np.percentile(arr, (1, 99)))
        scale = float(2 ** bits_stored - 1) if bits_stored else high - low
        dynamic = (p99 - p1) / scale if scale > 0 else 0.0
        measures["dynamic_range"] = round(dynamic, 4)
        if dynamic < spec.min_dynamic_range:
            reasons.append(f"no usable contrast (1st to 99th percentile span {dynamic:.1%} of "
                           f"the bit depth, at least {spec.min_dynamic_range:.0%} needed)")
    if spec.max_clipped_fraction is not None:
        clipped = max(float((arr == low).mean()), float((arr == high).mean()))
        measures["clipped_fraction"] = round(clipped, 4)
        if clipped > spec.max_clipped_fraction:
            reasons.append(f"saturated or clipped exposure ({clipped:.0%} of the pixels at one "
                           f"extreme value, at most {spec.max_clipped_fraction:.0%})")
    return QualityReport(measures, tuple(reasons))
