"""Diffusion b-values per frame (Enhanced MR) and per mosaic, and reading a chosen subset of
frames into a volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_node.selection import series_facts
from dicom_node.volume import DuplicatePositionError, EmptySeriesError, read_series
from dicom_node.volume.diffusion import b_value
from dicom_node.volume.sources import on_source_frames
from tests.unit.dicom_node.volume.diffusion_builders import enhanced_diffusion
from tests.unit.dicom_node.volume.mosaic_builders import mosaic_image
from tests.unit.dicom_node.volume.volume_builders import build, write

SHAPE = (6, 16, 14)


def _volumes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    out = {name: rng.integers(0, 3000, size=SHAPE).astype(np.uint16)
           for name in ("b0", "trace", "x", "y")}
    for name, volume in out.items():
        volume[:, 0, 0] = np.arange(SHAPE[0]) * 10 + len(name)  # slices and volumes differ
    return out


@pytest.fixture
def enhanced(tmp_path: Path) -> tuple[str, dict[str, np.ndarray], object]:
    v = _volumes()
    ds = enhanced_diffusion(
        [(0.0, "NONE", v["b0"]), (1000.0, "DIRECTIONAL", v["x"]),
         (1000.0, "ISOTROPIC", v["trace"]), (1000.0, "DIRECTIONAL", v["y"])],
        (5.0, 1.8, 1.6), origin=(-12.5, -14.0, -30.0))
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path), v, ds


def test_facts_give_the_trace_frames_per_b_value(enhanced) -> None:
    _, _, ds = enhanced
    facts = series_facts([ds])
    uid = ds.SOPInstanceUID
    assert facts.images == 24
    assert facts.b_values == ((0.0, (uid,)), (1000.0, (uid,)))
    # 4 frames per slice position: b0, x, trace, y; the b=1000 trace is frame 3 of each four,
    # the single-direction frames beside it are left out.
    assert facts.frames_at(1000.0) == tuple((uid, 4 * k + 3) for k in range(6))
    assert facts.frames_at(0.0) == tuple((uid, 4 * k + 1) for k in range(6))
    assert facts.frames_at(500.0) == ()


def test_the_b1000_frames_read_into_a_volume_with_their_geometry(enhanced) -> None:
    path, v, ds = enhanced
    facts = series_facts([ds])
    volume = read_series([path], frames=facts.frames_at(1000.0))
    np.testing.assert_array_equal(volume.voxels, v["trace"].astype(np.float32))
    np.testing.assert_allclose(volume.origin, (-12.5, -14.0, -30.0), atol=1e-6)
    np.testing.assert_allclose(volume.spacing, (5.0, 1.8, 1.6), atol=1e-6)
    assert [r.frame_number for r in volume.slice_refs] == [4 * k + 3 for k in range(6)]
    b0 = read_series([path], frames=facts.frames_at(0.0))
    np.testing.assert_array_equal(b0.voxels, v["b0"].astype(np.float32))
    np.testing.assert_allclose(b0.affine, volume.affine)


def test_all_frames_together_are_refused_as_duplicate_positions(enhanced) -> None:
    path, _, _ = enhanced
    with pytest.raises(DuplicatePositionError):
        read_series([path])


def test_frames_that_are_not_in_the_files_are_refused(enhanced) -> None:
    path, _, _ = enhanced
    with pytest.raises(EmptySeriesError):
        read_series([path], frames=[("1.2.3.4", 1)])


def test_single_frame_images_are_chosen_as_their_frame_1(tmp_path: Path) -> None:
    v = _volumes()["b0"]
    datasets = build(v, (5.0, 1.0, 1.0), modality="MR")
    paths = write(datasets, tmp_path)
    wanted = [(datasets[k].SOPInstanceUID, 1) for k in (1, 2, 3)]
    volume = read_series(paths, frames=wanted)
    np.testing.assert_array_equal(volume.voxels, v[1:4].astype(np.float32))


@pytest.mark.parametrize("count_in", ["csa", "private"])
def test_mosaic_b_value_from_the_csa_header_or_the_private_element(count_in: str) -> None:
    ds = mosaic_image(_volumes()["trace"], (5.0, 1.8, 1.6), origin=(0, 0, 0),
                      count_in=count_in, b_value=1000)
    assert b_value(ds) == 1000.0
    assert series_facts([ds]).b_values == ((1000.0, (ds.SOPInstanceUID,)),)


def test_a_mask_goes_back_onto_the_frames_it_was_read_from(enhanced, tmp_path: Path) -> None:
    path, v, ds = enhanced
    volume = read_series([path], frames=series_facts([ds]).frames_at(1000.0))
    mask = (volume.voxels > 1500).astype(np.uint8)
    sources, frames = on_source_frames(volume, mask)
    assert [s.SOPInstanceUID for s in sources] == [ds.SOPInstanceUID]
    assert frames.shape == (24, *SHAPE[1:])
    np.testing.assert_array_equal(frames[2::4], mask)  # the trace frames: 3, 7, 11, ...
    assert not frames[0::4].any() and not frames[1::4].any() and not frames[3::4].any()

    tiles = mosaic_image(v["trace"], (5.0, 1.8, 1.6), origin=(0, 0, 0))
    mosaic_path = tmp_path / "mosaic.dcm"
    tiles.save_as(mosaic_path, enforce_file_format=True)
    unpacked = read_series([str(mosaic_path)])
    sources, frames = on_source_frames(unpacked, unpacked.voxels)
    assert len(sources) == 1 and frames.shape == (1, tiles.Rows, tiles.Columns)
    np.testing.assert_array_equal(frames[0], tiles.pixel_array.astype(np.float32))
