"""Bringing a second series onto a first series' voxel grid by patient coordinates.

Two series of one study (a DWI and its ADC map, say) share the patient coordinate system when
they share a Frame of Reference (PS3.3 C.7.4.1.1.1); their voxel grids may still differ (other
matrix, spacing, field of view, slice positions). `resample_onto` maps every voxel centre of the
target grid to LPS millimetres (PS3.3 C.7.6.2.1.1), then into the moving series' voxel indices,
and interpolates trilinearly there; points outside the moving volume get `fill`.

Series in different Frames of Reference have no known spatial relation; they are refused
(`FrameOfReferenceMismatch`) rather than overlaid by index, which would silently misplace
findings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dicom_node.volume.errors import SeriesReadError
from dicom_node.volume.model import SeriesVolume

_SAME_GRID_MM = 1e-3


class FrameOfReferenceMismatch(SeriesReadError):
    """The two series lie in different Frames of Reference (PS3.3 C.7.4.1)."""

    reason = "frame_of_reference_mismatch"


def same_grid(a: SeriesVolume, b: SeriesVolume) -> bool:
    """True when both volumes have the same shape and the same voxel-to-patient mapping."""
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, atol=_SAME_GRID_MM))


def resample_onto(moving: SeriesVolume, target: SeriesVolume, fill: float = 0.0
                  ) -> SeriesVolume:
    """`moving`'s voxels on `target`'s grid (trilinear); `moving` itself when the grids match.

    The result keeps `moving`'s series UID, modality and units, and takes `target`'s geometry,
    slice references and headers, since each of its slices now lies in a target slice.

    Raises:
        FrameOfReferenceMismatch: both name a Frame of Reference and they differ.
    """
    if same_grid(moving, target):
        return moving
    if (moving.frame_of_reference_uid and target.frame_of_reference_uid
            and moving.frame_of_reference_uid != target.frame_of_reference_uid):
        raise FrameOfReferenceMismatch(
            "the series lie in different Frames of Reference; registration is needed to "
            "combine them")
    shape = target.shape
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape),
                                indexing="ij"), axis=-1).reshape(-1, 3)
    lps = grid @ target.affine[:3, :3].T + target.affine[:3, 3]
    indices = (lps - moving.affine[:3, 3]) @ np.linalg.inv(moving.affine[:3, :3]).T
    values = _trilinear(moving.voxels, indices, fill)
    return replace(moving, voxels=values.reshape(shape).astype(np.float32),
                   origin=target.origin, spacing=target.spacing, direction=target.direction,
                   slice_refs=target.slice_refs, headers=target.headers)


def _trilinear(volume: np.ndarray, points: np.ndarray, fill: float) -> np.ndarray:
    """Trilinear interpolation of `volume` at fractional (k, i, j) `points`; `fill` outside."""
    shape = np.asarray(volume.shape)
    # A point on the last plane of an axis with one voxel still lies inside.
    inside = np.all((points >= -0.5) & (points <= shape - 0.5), axis=1)
    p = np.clip(points, 0, shape - 1)
    low = np.floor(p).astype(np.int64)
    high = np.minimum(low + 1, shape - 1)
    frac = p - low
    out = np.zeros(len(p), dtype=np.float64)
    for dk in (0, 1):
        for di in (0, 1):
            for dj in (0, 1):
                k = high[:, 0] if dk else low[:, 0]
                i = high[:, 1] if di else low[:, 1]
                j = high[:, 2] if dj else low[:, 2]
                weight = ((frac[:, 0] if dk else 1 - frac[:, 0])
                          * (frac[:, 1] if di else 1 - frac[:, 1])
                          * (frac[:, 2] if dj else 1 - frac[:, 2]))
                out += weight * volume[k, i, j]
    out[~inside] = fill
    return out
