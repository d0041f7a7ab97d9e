"""Resampling a second series onto a first series' grid by patient coordinates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from dicom_node.volume import read_series
from dicom_node.volume.resample import FrameOfReferenceMismatch, resample_onto, same_grid


def _series(tmp: Path, name: str, values: np.ndarray, spacing: tuple[float, float, float],
            origin: tuple[float, float, float], frame: str = "1.2.3.4") -> object:
    identity = StudyIdentity(study_instance_uid="1.2.3")
    spec = SeriesSpec(modality="MR", frame_of_reference_uid=frame,
                      series_instance_uid=f"1.2.3.{len(name)}")
    paths = write_series(volume_series(values, spacing, identity=identity, spec=spec,
                                       origin=origin), str(tmp / name))
    return read_series(paths)


def _ramp(shape: tuple[int, int, int], spacing: tuple[float, float, float],
          origin: tuple[float, float, float]) -> np.ndarray:
    """A value linear in patient x, y and z: trilinear interpolation reproduces it exactly."""
    k, i, j = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x = origin[0] + j * spacing[2]
    y = origin[1] + i * spacing[1]
    z = origin[2] + k * spacing[0]
    return (1000 + 2 * x + 3 * y + 5 * z).astype(np.int16)


def test_the_same_grid_is_returned_unchanged(tmp_path: Path) -> None:
    values = _ramp((4, 8, 8), (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    a = _series(tmp_path, "a", values, (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    b = _series(tmp_path, "bb", values, (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    assert same_grid(a, b) and resample_onto(b, a) is b


def test_a_coarser_shifted_grid_lands_on_the_target_by_patient_position(tmp_path: Path) -> None:
    target = _series(tmp_path, "t", _ramp((6, 16, 16), (4.0, 1.0, 1.0), (10.0, 20.0, 30.0)),
                     (4.0, 1.0, 1.0), (10.0, 20.0, 30.0))
    # the moving series covers more than the target, on another grid
    moving_origin = (6.0, 16.0, 22.0)
    moving = _series(tmp_path, "mm", _ramp((10, 12, 12), (4.0, 2.0, 2.0), moving_origin),
                     (4.0, 2.0, 2.0), moving_origin)
    out = resample_onto(moving, target)
    assert out.shape == target.shape and same_grid(out, target)
    assert out.series_instance_uid == moving.series_instance_uid
    assert out.slice_refs == target.slice_refs
    np.testing.assert_allclose(out.voxels, target.voxels, atol=1e-3)


def test_different_frames_of_reference_are_refused(tmp_path: Path) -> None:
    values = _ramp((4, 8, 8), (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    a = _series(tmp_path, "a", values, (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    b = _series(tmp_path, "bb", values, (4.0, 2.0, 2.0), (1.0, 0.0, 0.0), frame="1.2.3.5")
    with pytest.raises(FrameOfReferenceMismatch) as raised:
        resample_onto(b, a)
    assert raised.value.reason == "frame_of_reference_mismatch"


def test_points_outside_the_moving_volume_get_the_fill_value(tmp_path: Path) -> None:
    values = _ramp((4, 8, 8), (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    a = _series(tmp_path, "a", values, (4.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    far = replace(a, origin=(500.0, 0.0, 0.0))
    assert np.all(resample_onto(far, a, fill=-1.0).voxels == -1.0)
