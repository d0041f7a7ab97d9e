"""Geometry of read series: affine from known orientation/spacing/tilt, and detected problems."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from dicom_node.volume import (
    DuplicatePositionError,
    GantryTiltError,
    MissingGeometryError,
    MixedOrientationError,
    MixedSeriesError,
    MixedSizeError,
    NonUniformSpacingError,
    ReadOptions,
    SliceGapError,
    read_series,
)
from tests.unit.dicom_node.volume.volume_builders import build, ct_volume, write


def _unit(v: tuple[float, ...]) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a / np.linalg.norm(a)


def _oblique() -> tuple[np.ndarray, np.ndarray]:
    """An orientation rotated about two axes, so no axis of the affine is trivially aligned."""
    row = _unit((math.cos(0.3), math.sin(0.3), 0.1))
    col = np.cross(_unit((0.2, -0.1, 1.0)), row)
    col = _unit(tuple(col))
    return row, col


@pytest.mark.parametrize(
    "row,col",
    [
        ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # axial
        ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # sagittal
        ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # coronal
        tuple(tuple(v) for v in _oblique()),
    ],
    ids=["axial", "sagittal", "coronal", "oblique"],
)
def test_affine_maps_every_slice_to_its_stored_position(tmp_path: Path, row, col) -> None:
    volume = ct_volume()
    spacing = (2.5, 0.45, 0.6)
    datasets = build(
        volume, spacing, origin=(-40.0, 12.5, 80.0), row_direction=row, column_direction=col
    )
    paths = write(datasets, tmp_path)
    random.Random(4).shuffle(paths)
    read = read_series(paths)

    assert read.spacing == pytest.approx(spacing, abs=1e-3)
    assert read.direction[:, 2] == pytest.approx(np.asarray(row), abs=1e-6)
    assert read.direction[:, 1] == pytest.approx(np.asarray(col), abs=1e-6)
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    for k, uid in enumerate(read.sop_instance_uids):
        stored = np.asarray(by_uid[uid].ImagePositionPatient, dtype=float)
        assert read.index_to_lps(np.array([k, 0, 0]))[0] == pytest.approx(stored, abs=1e-3)
    # The far corner of the last slice: row/column axes and spacing in the right columns.
    corner = read.index_to_lps(np.array([len(paths) - 1, 39, 31]))[0]
    expected = (
        np.asarray(by_uid[read.sop_instance_uids[-1]].ImagePositionPatient, dtype=float)
        + 39 * 0.45 * np.asarray(col) + 31 * 0.6 * np.asarray(row)
    )
    assert corner == pytest.approx(expected, abs=1e-3)
    # Slices ascend along the normal; voxels follow their slices.
    distances = [float(np.dot(by_uid[u].ImagePositionPatient, read.direction[:, 0]))
                 for u in read.sop_instance_uids]
    assert distances == sorted(distances)
    assert np.array_equal(read.voxels, volume.astype(np.float32))


def test_shuffled_and_reverse_stacked_files_read_the_same(tmp_path: Path) -> None:
    volume = ct_volume()
    # Stacked towards the feet: instance 1 is the most superior slice.
    datasets = build(volume, (3.0, 0.5, 0.5), origin=(0, 0, 100), slice_step=(0, 0, -3.0))
    paths = write(datasets, tmp_path)
    in_order = read_series(paths)
    random.Random(1).shuffle(paths)
    shuffled = read_series(paths)
    assert np.array_equal(in_order.voxels, shuffled.voxels)
    assert np.array_equal(in_order.affine, shuffled.affine)
    assert in_order.origin == pytest.approx((0, 0, 100 - 3.0 * 11))
    assert np.array_equal(shuffled.voxels, volume[::-1].astype(np.float32))
    assert [h.SOPInstanceUID for h in shuffled.headers] == list(shuffled.sop_instance_uids)
    assert all("PixelData" not in h for h in shuffled.headers)


def test_duplicate_positions_are_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    datasets[5].ImagePositionPatient = list(datasets[4].ImagePositionPatient)
    with pytest.raises(DuplicatePositionError) as info:
        read_series(write(datasets, tmp_path))
    assert info.value.reason == "duplicate_position"


def test_gap_is_reported_as_missing_slices(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    del datasets[6:8]
    with pytest.raises(SliceGapError) as info:
        read_series(write(datasets, tmp_path))
    assert "2 slice(s) missing" in str(info.value)


def test_irregular_spacing_is_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    position = list(datasets[3].ImagePositionPatient)
    position[2] += 0.7
    datasets[3].ImagePositionPatient = position
    with pytest.raises(NonUniformSpacingError) as info:
        read_series(write(datasets, tmp_path))
    assert not isinstance(info.value, SliceGapError)


def test_small_position_noise_is_tolerated(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    position = list(datasets[3].ImagePositionPatient)
    position[2] += 0.02
    datasets[3].ImagePositionPatient = position
    assert read_series(write(datasets, tmp_path)).spacing[0] == pytest.approx(2.0)


def test_positions_off_a_line_are_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    position = list(datasets[6].ImagePositionPatient)
    position[0] += 3.0
    datasets[6].ImagePositionPatient = position
    with pytest.raises(NonUniformSpacingError, match="straight line"):
        read_series(write(datasets, tmp_path))


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient",
                                     "PixelSpacing"])
def test_missing_geometry_is_refused(tmp_path: Path, keyword: str) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    delattr(datasets[2], keyword)
    with pytest.raises(MissingGeometryError):
        read_series(write(datasets, tmp_path))


def test_mixed_orientation_is_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume(), (2.0, 0.5, 0.5))
    angle = math.radians(2.0)
    datasets[4].ImageOrientationPatient = [
        math.cos(angle), math.sin(angle), 0.0, -math.sin(angle), math.cos(angle), 0.0
    ]
    with pytest.raises(MixedOrientationError):
        read_series(write(datasets, tmp_path))


def test_mixed_sizes_are_refused(tmp_path: Path) -> None:
    small = build(ct_volume((4, 20, 16)), (2.0, 0.5, 0.5))
    big = build(ct_volume((12, 40, 32)), (2.0, 0.5, 0.5), origin=(0, 0, 8.0))
    for ds in big:
        ds.InstanceNumber += len(small)  # distinct file names
        ds.SeriesInstanceUID = small[0].SeriesInstanceUID
        ds.FrameOfReferenceUID = small[0].FrameOfReferenceUID
    with pytest.raises(MixedSizeError):
        read_series(write([*small, *big], tmp_path))


def test_files_of_two_series_are_refused(tmp_path: Path) -> None:
    one = build(ct_volume((3, 8, 8)), (2.0, 0.5, 0.5))
    two = build(ct_volume((3, 8, 8)), (2.0, 0.5, 0.5))
    for ds in two:
        ds.SeriesNumber = 3
    with pytest.raises(MixedSeriesError):
        read_series(write([*one, *two], tmp_path))


def _tilted(tmp_path: Path, degrees: float):
    volume = np.full((10, 60, 40), -1000, dtype=np.int16)
    step = 2.0
    shift = step * math.tan(math.radians(degrees))
    # A bright rod that is straight along the normal in patient space: x = 0, y = 10 mm.
    # On slice k of a tilted stack the plane's grid is shifted by k * shift along y, so the rod
    # is stored at row (10 - k * shift) / 0.5 + 20.
    origin_y = -10.0
    for k in range(10):
        y_mm = 10.0 - (origin_y + k * shift)
        volume[k, int(round(y_mm / 0.5)), 20] = 1000
    datasets = build(
        volume, (step, 0.5, 0.5), origin=(-10.0, origin_y, 0.0), slice_step=(0.0, shift, step)
    )
    return write(datasets, tmp_path)


def test_gantry_tilt_is_refused_with_its_angle(tmp_path: Path) -> None:
    with pytest.raises(GantryTiltError) as info:
        read_series(_tilted(tmp_path, 12.0))
    assert info.value.angle_deg == pytest.approx(12.0, abs=0.05)
    assert info.value.reason == "gantry_tilt"


def test_gantry_tilt_is_corrected_onto_an_orthogonal_grid(tmp_path: Path) -> None:
    paths = _tilted(tmp_path, 12.0)
    read = read_series(paths, ReadOptions(correct_tilt=True))
    assert read.tilt_corrected and read.tilt_deg == pytest.approx(12.0, abs=0.05)
    assert read.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert read.direction == pytest.approx(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    assert read.origin == pytest.approx((-10.0, -10.0, 0.0))
    # After correction the rod sits at the same row on every slice: y = 10 mm -> row 40.
    for k in range(10):
        profile = read.voxels[k, :, 20]
        peak = float(np.sum(np.arange(60) * (profile + 1000)) / np.sum(profile + 1000))
        assert peak == pytest.approx(40.0, abs=0.6), k
        point = read.index_to_lps(np.array([k, peak, 20]))[0]
        assert point[1] == pytest.approx(10.0, abs=0.3)


def test_tilt_below_tolerance_is_not_resampled(tmp_path: Path) -> None:
    read = read_series(_tilted(tmp_path, 0.05))
    assert not read.tilt_corrected


def test_single_slice_uses_slice_thickness(tmp_path: Path) -> None:
    read = read_series(write(build(ct_volume((1, 8, 8)), (3.0, 0.5, 0.5)), tmp_path))
    assert read.shape == (1, 8, 8) and read.spacing[0] == pytest.approx(3.0)
