"""Pixel decoding: compressed syntaxes equal the native pixels; HU; Enhanced multi-frame."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from dicom_node.synth import SeriesSpec, StudyIdentity
from dicom_node.volume import (
    MissingGeometryError,
    UnsupportedPixelDataError,
    read_series,
)
from dicom_node.volume.synth_enhanced import enhanced_series
from tests.unit.dicom_node.volume.volume_builders import build, convert, ct_volume, write

needs_dcmtk = pytest.mark.skipif(shutil.which("dcmcjpls") is None, reason="DCMTK not installed")

LOSSLESS = {
    "jpeg-lossless-sv1": ["dcmcjpeg"],
    "jpeg-ls-lossless": ["dcmcjpls"],
    "rle": ["dcmcrle"],
    "deflate": ["dcmconv", "+td"],
}


@needs_dcmtk
@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_syntaxes_decode_to_the_native_pixels(tmp_path: Path, name: str) -> None:
    volume = ct_volume((6, 40, 32))
    native = write(build(volume, (2.0, 0.5, 0.5)), tmp_path / "native")
    converted = convert(native, LOSSLESS[name], tmp_path / name)
    syntax = pydicom.dcmread(converted[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax != pydicom.dcmread(native[0]).file_meta.TransferSyntaxUID
    random.Random(2).shuffle(converted)
    assert np.array_equal(read_series(converted).voxels, read_series(native).voxels)


def test_jpeg2000_lossless_decodes_to_the_native_pixels(tmp_path: Path) -> None:
    volume = ct_volume((4, 32, 32))
    datasets = build(volume, (2.0, 0.5, 0.5))
    native = write(datasets, tmp_path / "native")
    for ds in datasets:
        ds.compress(JPEG2000Lossless)
    compressed = write(datasets, tmp_path / "j2k")
    assert np.array_equal(read_series(compressed).voxels, read_series(native).voxels)


@needs_dcmtk
def test_jpeg_baseline_decodes_close_to_the_native_pixels(tmp_path: Path) -> None:
    # Baseline JPEG is 8-bit and lossy: an 8-bit MR series, compared within a tolerance.
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.integers(0, 3, (3, 48, 48)), axis=1), axis=2)
    volume = (smooth * 250 // smooth.max()).astype(np.uint16)
    datasets = build(volume, (4.0, 0.9, 0.9), modality="MR")
    for ds in datasets:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.frombuffer(ds.PixelData, dtype=np.uint16).astype(np.uint8).tobytes()
    native = write(datasets, tmp_path / "native")
    lossy = convert(native, ["dcmcjpeg", "+eb"], tmp_path / "baseline")
    syntax = pydicom.dcmread(lossy[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax == JPEGBaseline8Bit
    error = np.abs(read_series(lossy).voxels - read_series(native).voxels)
    assert float(error.mean()) < 2.0


def test_ct_values_are_hounsfield_units(tmp_path: Path) -> None:
    volume = ct_volume((3, 16, 16))
    datasets = build(volume, (2.0, 0.5, 0.5))
    for ds in datasets:
        # Same HU stored differently: slope 2, intercept -2048.
        stored = (volume[ds.InstanceNumber - 1].astype(np.int32) + 2048) // 2
        ds.RescaleSlope, ds.RescaleIntercept = 2, -2048
        ds.PixelData = stored.astype(np.uint16).tobytes()
    read = read_series(write(datasets, tmp_path))
    assert read.units == "HU"
    expected = ((volume.astype(np.int32) + 2048) // 2) * 2 - 2048
    assert np.array_equal(read.voxels, expected.astype(np.float32))


def test_mr_keeps_stored_values(tmp_path: Path) -> None:
    volume = np.random.default_rng(5).integers(0, 4000, (4, 16, 16)).astype(np.uint16)
    read = read_series(write(build(volume, (5.0, 1.0, 1.0), modality="MR"), tmp_path))
    assert read.units == "stored" and read.modality == "MR"
    assert np.array_equal(read.voxels, volume.astype(np.float32))


def test_colour_images_are_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume((2, 8, 8)), (2.0, 0.5, 0.5))
    for ds in datasets:
        ds.PhotometricInterpretation = "RGB"
    with pytest.raises(UnsupportedPixelDataError):
        read_series(write(datasets, tmp_path))


def test_truncated_pixel_data_is_refused(tmp_path: Path) -> None:
    datasets = build(ct_volume((2, 8, 8)), (2.0, 0.5, 0.5))
    datasets[1].PixelData = bytes(datasets[1].PixelData)[:10]
    with pytest.raises(UnsupportedPixelDataError):
        read_series(write(datasets, tmp_path))


def _enhanced(tmp_path: Path, volume: np.ndarray, **kwargs: object) -> tuple[Path, object]:
    ds = enhanced_series(
        volume, (2.5, 0.5, 0.6), identity=StudyIdentity(), spec=SeriesSpec(),
        origin=(5.0, -7.0, 30.0), **kwargs,  # type: ignore[arg-type]
    )
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, ds


def test_enhanced_ct_reads_like_the_classic_series(tmp_path: Path) -> None:
    volume = ct_volume((8, 24, 20))
    order = [3, 0, 7, 1, 6, 2, 5, 4]  # frames stored out of stack order
    path, ds = _enhanced(tmp_path, volume, frame_order=order)
    read = read_series([path])
    classic = read_series(
        write(build(volume, (2.5, 0.5, 0.6), origin=(5.0, -7.0, 30.0)), tmp_path / "classic")
    )
    assert np.array_equal(read.voxels, volume.astype(np.float32))
    assert read.affine == pytest.approx(classic.affine)
    assert read.units == "HU"
    # Slice k came from the frame that stored slice k.
    assert [r.frame_number for r in read.slice_refs] == [order.index(k) + 1 for k in range(8)]
    assert set(read.sop_instance_uids) == {ds.SOPInstanceUID}
    assert len(read.headers) == 1 and "PixelData" not in read.headers[0]


def test_enhanced_ct_per_frame_rescale_and_compression(tmp_path: Path) -> None:
    volume = ct_volume((4, 32, 32))
    path, ds = _enhanced(tmp_path, volume)
    # Frame 3 stores its values halved, with its own Pixel Value Transformation.
    frames = np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(4, 32, 32).copy()
    frames[2] = (volume[2].astype(np.int32) + 2048) // 2
    ds.PixelData = frames.tobytes()
    item = pydicom.Dataset()
    item.RescaleSlope, item.RescaleIntercept, item.RescaleType = 2, -2048, "HU"
    ds.PerFrameFunctionalGroupsSequence[2].PixelValueTransformationSequence = [item]
    ds.compress(JPEG2000Lossless)
    ds.save_as(path, enforce_file_format=True)
    read = read_series([path])
    expected = volume.astype(np.float32)
    expected[2] = ((volume[2].astype(np.int32) + 2048) // 2) * 2 - 2048
    assert np.array_equal(read.voxels, expected)


def test_enhanced_without_plane_position_is_refused(tmp_path: Path) -> None:
    path, ds = _enhanced(tmp_path, ct_volume((3, 8, 8)))
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(MissingGeometryError):
        read_series([path])
