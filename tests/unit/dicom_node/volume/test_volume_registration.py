"""Rigid registration (SimpleITK, Mattes mutual information, Euler 3D) of a series in another
Frame of Reference: a known rotation and translation are recovered within 1 degree and 1 mm."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_node.volume.model import SeriesVolume, SliceRef
from dicom_node.volume.registration import (
    RegistrationError,
    align_onto,
    register_onto,
)

AXIAL = np.column_stack([(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)])
CENTRE = np.array([2.0, -10.0, 30.0])


def _head(points: np.ndarray) -> np.ndarray:
    """An asymmetric head-like object in LPS mm: brain ellipsoid, a ventricle, a bright lesion
    on the left, smooth edges (so the metric has gradients)."""
    def ellipsoid(centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
        d = np.sqrt((((points - CENTRE - centre) / radii) ** 2).sum(axis=-1))
        return 1.0 / (1.0 + np.exp((d - 1.0) * 12.0))
    return (800 * ellipsoid((0, 0, 0), (60, 75, 50))
            - 500 * ellipsoid((-6, 5, 8), (10, 25, 12))
            + 600 * ellipsoid((28, -20, -5), (12, 9, 10))
            + 300 * ellipsoid((-25, 30, -15), (8, 14, 7)))


def _grid_points(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 origin: np.ndarray) -> np.ndarray:
    k, i, j = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    index = np.stack([k, i, j], axis=-1)
    return origin + index @ (AXIAL * np.asarray(spacing)).T


def _volume(voxels: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray,
            frame_of_reference: str, series: str) -> SeriesVolume:
    refs = tuple(SliceRef(f"{series}.{k + 1}", None, 0) for k in range(voxels.shape[0]))
    return SeriesVolume(voxels=voxels.astype(np.float32), origin=tuple(origin), spacing=spacing,
                        direction=AXIAL, slice_refs=refs, headers=(Dataset(),), modality="MR",
                        units="stored", series_instance_uid=series, study_instance_uid="1.2.3",
                        frame_of_reference_uid=frame_of_reference)


def _rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    out: np.ndarray = rz @ ry @ rx
    return out


def _pair(rotation_deg: tuple[float, float, float], shift: tuple[float, float, float],
          moving_for: str = "1.2.3.9") -> tuple[SeriesVolume, SeriesVolume]:
    """Target: the head on a DWI-like grid. Moving: the head after the rigid motion
    x -> R (x - CENTRE) + CENTRE + shift, on another grid, with inverted contrast (as ADC is
    to DWI), in Frame of Reference `moving_for`."""
    target_origin = CENTRE - np.array([96.0, 96.0, 60.0])
    target_shape, target_spacing = (24, 48, 48), (5.0, 4.0, 4.0)
    target = _head(_grid_points(target_shape, target_spacing, target_origin))
    r = _rotation(rotation_deg)
    moving_origin = CENTRE - np.array([100.0, 104.0, 66.0])
    moving_shape, moving_spacing = (22, 40, 44), (6.0, 5.2, 4.6)
    points = _grid_points(moving_shape, moving_spacing, moving_origin)
    # A moving point q shows the head point T^-1(q) = R^T (q - CENTRE - shift) + CENTRE.
    source = (points - CENTRE - np.asarray(shift)) @ r + CENTRE
    moving = 1500.0 - _head(source)
    return (_volume(moving, moving_spacing, moving_origin, moving_for, "1.2.3.2"),
            _volume(target, target_spacing, target_origin, "1.2.3.1", "1.2.3.1"))


def test_a_known_rigid_motion_is_recovered_within_1_mm_and_1_degree() -> None:
    rotation, shift = (4.0, -3.0, 7.0), (6.0, -8.0, 5.0)
    moving, target = _pair(rotation, shift)
    moved, report = register_onto(moving, target)
    # The transform maps target points to moving points: the head's own motion.
    np.testing.assert_allclose(report.translation_mm, shift, atol=1.0)
    expected = _rotation(rotation)
    found = np.asarray(report.rotation_matrix).reshape(3, 3)
    residual = np.degrees(np.arccos(np.clip((np.trace(found.T @ expected) - 1) / 2, -1, 1)))
    assert residual < 1.0, f"rotation off by {residual:.2f} degrees"
    assert report.rotation_angle_deg == pytest.approx(
        np.degrees(np.arccos((np.trace(expected) - 1) / 2)), abs=1.0)
    assert report.iterations > 0 and report.final_metric < 0
    assert report.moving_frame_of_reference_uid == "1.2.3.9"
    # The moved volume lies on the target grid, in its Frame of Reference, and matches it.
    assert moved.shape == target.shape and moved.frame_of_reference_uid == "1.2.3.1"
    np.testing.assert_allclose(moved.affine, target.affine)
    assert moved.series_instance_uid == "1.2.3.2"
    inside = target.voxels > 400
    correlation = np.corrcoef(moved.voxels[inside], target.voxels[inside])[0, 1]
    assert correlation < -0.95  # inverted contrast, same anatomy in the same place
    assert set(report.summary()) == {"registration_translation_mm", "registration_rotation_deg",
                                     "registration_metric", "registration_iterations"}


def test_align_resamples_in_one_frame_of_reference_and_registers_across_two() -> None:
    moving, target = _pair((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), moving_for="1.2.3.1")
    same, report = align_onto(moving, target)
    assert report is None and same.shape == target.shape
    moving, target = _pair((0.0, 0.0, 3.0), (2.0, 0.0, 0.0))
    _, report = align_onto(moving, target)
    assert report is not None
    np.testing.assert_allclose(report.translation_mm, (2.0, 0.0, 0.0), atol=1.0)


def test_a_constant_image_cannot_be_registered() -> None:
    moving, target = _pair((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    blank = SeriesVolume(**{**moving.__dict__, "voxels": np.zeros_like(moving.voxels)})
    with pytest.raises(RegistrationError):
        register_onto(blank, target)
