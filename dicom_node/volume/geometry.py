"""Slice geometry from Image Position / Orientation (Patient): order, spacing, gantry tilt.

Pure numpy over positions in LPS mm (PS3.3 C.7.6.2.1.1). Slices are ordered by their distance
along the normal of the image plane (row direction x column direction), never by Instance
Number, which scanners number in either direction.

Gantry tilt: the image planes stay perpendicular to their normal, but consecutive planes are
displaced along a vector that is not the normal. The angle between that step and the normal is
the tilt; it is measured here and corrected (elsewhere) by shifting each slice back in-plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dicom_node.volume.errors import (
    DuplicatePositionError,
    MissingGeometryError,
    MixedOrientationError,
    NonUniformSpacingError,
    SliceGapError,
)
from dicom_node.volume.model import ReadOptions


@dataclass(frozen=True)
class StackGeometry:
    """How the slices stack. `order[k]` is the input index of slice k; `step_mm` is the
    distance between consecutive planes along `normal`; `shift_mm` the in-plane displacement per
    slice as (along row direction, along column direction); `tilt_deg` the angle between the
    step and the normal."""

    order: tuple[int, ...]
    row: np.ndarray
    column: np.ndarray
    normal: np.ndarray
    origin: np.ndarray
    step_mm: float
    shift_mm: tuple[float, float]
    tilt_deg: float


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))
    return math.degrees(math.acos(cos))


def orientation_axes(
    orientations: Sequence[tuple[float, ...] | None], options: ReadOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column and normal vectors shared by all slices.

    Raises:
        MissingGeometryError: an orientation is absent or its vectors are not orthogonal.
        MixedOrientationError: two slices differ by more than the tolerance.
    """
    if any(o is None for o in orientations):
        missing = sum(o is None for o in orientations)
        raise MissingGeometryError(f"{missing} slice(s) without Image Orientation (Patient)")
    first = np.asarray(orientations[0], dtype=float)
    row, col = first[:3], first[3:]
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(col) < 1e-6:
        raise MissingGeometryError("Image Orientation (Patient) has a zero vector")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    if abs(float(np.dot(row, col))) > 1e-3:
        raise MissingGeometryError("row and column directions are not orthogonal")
    worst = 0.0
    for o in orientations[1:]:
        other = np.asarray(o, dtype=float)
        worst = max(worst, _angle_deg(row, other[:3]), _angle_deg(col, other[3:]))
    if worst > options.orientation_tolerance_deg:
        raise MixedOrientationError(
            f"slice orientations differ by up to {worst:.3f} degrees "
            f"(tolerance {options.orientation_tolerance_deg})"
        )
    return row, col, np.cross(row, col)


def _check_steps(steps: np.ndarray, options: ReadOptions) -> float:
    """Median step after checking duplicates, gaps and uniformity."""
    duplicates = int(np.sum(steps < options.duplicate_tolerance_mm))
    if duplicates:
        raise DuplicatePositionError(
            f"{duplicates} slice(s) share a position along the normal with another slice"
        )
    median = float(np.median(steps))
    tolerance = max(options.spacing_tolerance_mm, options.spacing_tolerance_ratio * median)
    deviation = np.abs(steps - median)
    if float(deviation.max(initial=0.0)) <= tolerance:
        return median
    multiples = np.rint(steps / median)
    gaps = (multiples >= 2) & (np.abs(steps - multiples * median) <= tolerance)
    bad = deviation > tolerance
    if np.all(gaps[bad]):
        missing = int(np.sum(multiples[gaps] - 1))
        raise SliceGapError(
            f"{missing} slice(s) missing: {int(np.sum(gaps))} step(s) are whole multiples of "
            f"{median:.3f} mm"
        )
    raise NonUniformSpacingError(
        f"slice steps range {float(steps.min()):.3f}-{float(steps.max()):.3f} mm around a median "
        f"of {median:.3f} mm (tolerance {tolerance:.3f})"
    )


def analyse_stack(
    positions: Sequence[tuple[float, float, float] | None],
    orientations: Sequence[tuple[float, ...] | None],
    options: ReadOptions,
    fallback_step_mm: float | None = None,
) -> StackGeometry:
    """Orders the slices along their normal and measures step, in-plane shift and tilt.

    `fallback_step_mm` (Spacing Between Slices or Slice Thickness) is used only for a single
    slice, where no step can be measured.

    Raises:
        MissingGeometryError, MixedOrientationError, DuplicatePositionError,
        SliceGapError, NonUniformSpacingError.
    """
    if any(p is None for p in positions):
        missing = sum(p is None for p in positions)
        raise MissingGeometryError(f"{missing} slice(s) without Image Position (Patient)")
    row, col, normal = orientation_axes(orientations, options)
    points = np.asarray(positions, dtype=float)
    distance = points @ normal
    order = np.argsort(distance, kind="stable")
    points, distance = points[order], distance[order]
    if len(points) == 1:
        if fallback_step_mm is None or fallback_step_mm <= 0:
            raise MissingGeometryError("a single slice without Slice Thickness")
        return StackGeometry(
            (0,), row, col, normal, points[0], float(fallback_step_mm), (0.0, 0.0), 0.0
        )
    step = _check_steps(np.diff(distance), options)
    # In-plane offsets of each slice from the first, in the row / column frame. A straight stack
    # has them constant (no tilt) or growing linearly with the slice index (tilt).
    offsets = points - points[0]
    along_row, along_col = offsets @ row, offsets @ col
    n_steps = distance - distance[0]
    per_mm = (along_row[-1] / n_steps[-1], along_col[-1] / n_steps[-1])
    residual = np.hypot(along_row - per_mm[0] * n_steps, along_col - per_mm[1] * n_steps)
    tolerance = max(options.spacing_tolerance_mm, options.spacing_tolerance_ratio * step)
    if float(residual.max()) > tolerance:
        raise NonUniformSpacingError(
            f"slice positions leave a straight line by up to {float(residual.max()):.3f} mm"
        )
    shift = (float(per_mm[0] * step), float(per_mm[1] * step))
    tilt = math.degrees(math.atan2(math.hypot(*shift), step))
    return StackGeometry(
        tuple(int(i) for i in order), row, col, normal, points[0], step, shift, tilt
    )


def _shift_axis(image: np.ndarray, shift: float, axis: int, fill: float) -> np.ndarray:
    """out[..., x, ...] = image[..., x - shift, ...] with linear interpolation along `axis`."""
    if shift == 0.0:
        return image
    n = image.shape[axis]
    source = np.arange(n, dtype=float) - shift
    low = np.floor(source)
    weight = (source - low).astype(image.dtype)
    low_i = low.astype(int)
    high_i = low_i + 1

    def take(idx: np.ndarray) -> np.ndarray:
        valid = (idx >= 0) & (idx < n)
        values = np.take(image, np.clip(idx, 0, n - 1), axis=axis)
        shape = [1] * image.ndim
        shape[axis] = n
        return np.where(valid.reshape(shape), values, fill)

    shape = [1] * image.ndim
    shape[axis] = n
    w = weight.reshape(shape)
    out: np.ndarray = take(low_i) * (1 - w) + take(high_i) * w
    return out


def untilt(
    voxels: np.ndarray, shift_px: tuple[float, float], fill: float
) -> np.ndarray:
    """Resamples a sheared stack onto a grid whose slices stack along their normal.

    Slice k of the input is displaced in-plane by ``k * shift_px`` (columns, rows) relative to
    slice 0; the output slice k holds the same plane on slice 0's in-plane grid, sampled with
    bilinear interpolation (exact for a translation); samples outside the stored image get `fill`.
    """
    out = np.empty_like(voxels)
    for k in range(voxels.shape[0]):
        shifted = _shift_axis(voxels[k], k * shift_px[1], axis=0, fill=fill)
        out[k] = _shift_axis(shifted, k * shift_px[0], axis=1, fill=fill)
    return out
