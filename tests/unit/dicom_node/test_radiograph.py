"""read_radiograph: pixels (photometric, LUTs, padding, bits, frames), refusals and spacing.

Files are written by tests/support/radiographs.py, whose `expected_pixels` computes what the
reader must return from the builder's own quantiser and LUT formulas; odd headers are made by
rewriting one attribute of a valid file.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import JPEGLSLossless

from dicom_node.radiograph import RadiographImage, read_radiograph
from dicom_node.volume.errors import PermanentError, RadiographReadError, SeriesReadError
from tests.support.radiographs import (
    RadiographSpec,
    expected_pixels,
    expected_spacing,
    write_radiograph,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _image(rows: int = 40, columns: int = 32, seed: int = 0) -> np.ndarray:
    """A bone-bright test image in [0, 1]: a bright bar over a graded background and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    image = 0.2 + 0.3 * x / columns + 0.05 * rng.random((rows, columns))
    image[rows // 4: rows // 2, 4:-4] = 0.9
    return image


def _write(tmp_path: Path, name: str = "xr.dcm", image: np.ndarray | None = None,
           **spec: Any) -> tuple[Path, RadiographSpec, np.ndarray]:
    picture = _image() if image is None else image
    built = RadiographSpec(**spec)
    return write_radiograph(tmp_path / name, picture, built), built, picture


def _rewrite(path: Path, **changes: Any) -> Path:
    """Sets (or, with None, deletes) attributes of a written file in place."""
    ds = dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def _raw(path: Path, tag: int, vr: str, value: bytes) -> Path:
    """Writes `value` as the raw bytes of one element, so malformed values reach the reader."""
    ds = dcmread(path)
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    ds.save_as(path)
    return path


# --- result and errors ---------------------------------------------------------------------------

def test_result_carries_the_instance_facts(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, view="PA", laterality="R")
    got = read_radiograph(path)
    assert isinstance(got, RadiographImage)
    assert got.pixels.dtype == np.float32 and got.pixels.shape == image.shape
    assert (got.rows, got.columns) == image.shape
    assert got.sop_instance_uid == spec.sop_instance_uid
    assert got.series_instance_uid == spec.series_instance_uid
    assert (got.modality, got.photometric, got.view) == ("DX", "MONOCHROME2", "PA")
    assert got.presentation_intent == "FOR PRESENTATION"
    assert got.laterality == "right" and got.frames == 1


def test_error_type_is_a_permanent_series_read_error() -> None:
    error = RadiographReadError("x", "unreadable_pixels")
    assert isinstance(error, SeriesReadError) and isinstance(error, PermanentError)
    assert error.reason == "unreadable_pixels"


@pytest.mark.parametrize("photometric, samples", [
    ("RGB", 3), ("YBR_FULL", 3), ("PALETTE COLOR", 1), ("MONOCHROME2", 3), ("", 1)])
def test_colour_images_are_refused(tmp_path: Path, photometric: str, samples: int) -> None:
    path, _, _ = _write(tmp_path)
    _rewrite(path, PhotometricInterpretation=photometric or None, SamplesPerPixel=samples)
    with pytest.raises(RadiographReadError) as caught:
        read_radiograph(path)
    assert caught.value.reason == "unsupported_photometric"


def test_missing_pixel_data_is_unreadable(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path)
    _rewrite(path, PixelData=None)
    with pytest.raises(RadiographReadError) as caught:
        read_radiograph(path)
    assert caught.value.reason == "unreadable_pixels"


def test_undecodable_pixel_data_is_unreadable(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path)
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x08\x00\x00\x00" \
        + b"\xff\xd8\x00\x01\x02\x03\x04\x05" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)
    with pytest.raises(RadiographReadError) as caught:
        read_radiograph(path)
    assert caught.value.reason == "unreadable_pixels"


def test_a_file_that_is_not_dicom_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("not an image")
    with pytest.raises(RadiographReadError) as caught:
        read_radiograph(path)
    assert caught.value.reason == "unreadable_file"


# --- intensities ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_pixels_match_the_oracle(tmp_path: Path, bits: int, photometric: str) -> None:
    path, spec, image = _write(tmp_path, bits=bits, photometric=photometric)
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    # Bone bright whatever the photometric: the output rises with the drawn attenuation.
    order = np.argsort(image, axis=None)
    assert np.all(np.diff(got.pixels.ravel()[order]) >= 0)
    assert ("MONOCHROME1 inverted" in got.notes) == (photometric == "MONOCHROME1")


def test_monochrome1_reads_as_its_monochrome2_twin(tmp_path: Path) -> None:
    one, _, _ = _write(tmp_path, "m1.dcm", photometric="MONOCHROME1")
    two, _, _ = _write(tmp_path, "m2.dcm", photometric="MONOCHROME2")
    assert dcmread(one).pixel_array.tolist() != dcmread(two).pixel_array.tolist()
    np.testing.assert_array_equal(read_radiograph(one).pixels, read_radiograph(two).pixels)


def test_monochrome1_labelled_identity_is_still_inverted_once(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, photometric="MONOCHROME1")
    _rewrite(path, PresentationLUTShape="IDENTITY")
    np.testing.assert_array_equal(read_radiograph(path).pixels, expected_pixels(image, spec))


def test_inverse_presentation_shape_inverts_monochrome2(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, bits=12)
    plain = read_radiograph(path).pixels
    _rewrite(path, PresentationLUTShape="INVERSE")
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, 4095 - plain)
    assert "presentation LUT shape INVERSE on MONOCHROME2: inverted" in got.notes


def test_cr_rescale_is_applied(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, modality="CR", bits=12)
    got = read_radiograph(path)
    stored = dcmread(path).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(got.pixels, stored * 0.5 + 100)
    assert "rescale applied (slope 0.5, intercept 100)" in got.notes


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_modality_lut_sequence_is_applied(tmp_path: Path, photometric: str) -> None:
    path, spec, image = _write(tmp_path, modality="CR", modality_lut="sequence", voi=None,
                               photometric=photometric)
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    assert "modality LUT sequence applied" in got.notes
    # The square-root LUT is not affine: a rescale could not have produced these values.
    stored = dcmread(path).pixel_array.astype(np.float64).ravel()
    fit = np.polyfit(stored, got.pixels.ravel(), 1)
    assert np.abs(np.polyval(fit, stored) - got.pixels.ravel()).max() > 100


@pytest.mark.parametrize("slope", [b"0 ", b"x "])
def test_unusable_rescale_slope_is_ignored(tmp_path: Path, slope: bytes) -> None:
    path, _, _ = _write(tmp_path, modality="CR", bits=12)
    _raw(path, 0x00281053, "DS", slope)
    got = read_radiograph(path)
    stored = dcmread(path).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(got.pixels, stored + 100)
    assert "rescale slope unusable: ignored" in got.notes


def test_window_is_never_applied(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, voi="window")
    first = read_radiograph(path)
    _rewrite(path, WindowCenter=300, WindowWidth=50)
    second = read_radiograph(path)
    np.testing.assert_array_equal(first.pixels, second.pixels)
    np.testing.assert_array_equal(first.pixels, expected_pixels(image, spec))
    assert "VOI window not applied" in second.notes


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_nonlinear_voi_lut_is_applied_to_images_for_display(tmp_path: Path, modality: str) -> None:
    path, spec, image = _write(tmp_path, modality=modality, voi="lut-sequence",
                               photometric="MONOCHROME1")
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    assert "non-linear VOI LUT 1 of 1 applied (for display)" in got.notes
    without = read_radiograph(_rewrite(path, VOILUTSequence=None))
    assert not np.array_equal(without.pixels, got.pixels)


def test_voi_lut_is_not_applied_for_processing(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path, voi="lut-sequence")
    plain = read_radiograph(_write(tmp_path, "plain.dcm", voi=None)[0]).pixels
    _rewrite(path, PresentationIntentType="FOR PROCESSING")
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, plain)
    assert "VOI LUT sequence not applied" in got.notes


def test_linear_voi_lut_is_not_applied(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path, voi="lut-sequence")
    ds = dcmread(path)
    item = ds.VOILUTSequence[0]
    item.LUTData = (np.arange(4096, dtype="<u2") * 16).tobytes()
    ds.save_as(path)
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, dcmread(path).pixel_array.astype(np.float32))
    assert "VOI LUT sequence not applied" in got.notes


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_padding_goes_to_the_minimum_and_out_of_the_range(tmp_path: Path,
                                                          photometric: str) -> None:
    image = _image()
    image[:5, :] = np.nan  # outside the collimated field
    padding = 4095 if photometric == "MONOCHROME1" else 0
    path, spec, _ = _write(tmp_path, image=image, photometric=photometric,
                           padding_value=padding)
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    assert got.pixels[:5].max() == got.pixels.min()
    assert "pixel padding set to minimum" in got.notes


def test_multi_frame_reads_frame_one(tmp_path: Path) -> None:
    path, spec, image = _write(tmp_path, modality="CR", bits=16)
    ds = dcmread(path)
    first = ds.pixel_array
    ds.NumberOfFrames = 2
    ds.PixelData = first.tobytes() + (65535 - first).tobytes()
    ds.save_as(path)
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    assert got.frames == 2 and "multi-frame: frame 1 of 2 read" in got.notes


def test_large_image_costs_little_beyond_its_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.random((4096, 4096), dtype=np.float32)
    path, _, _ = _write(tmp_path, image=image, bits=16)
    del image
    tracemalloc.start()
    try:
        got = read_radiograph(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = got.pixels.nbytes  # 64 MiB of float32
    # The output, the decoded 16-bit frame (half of it), one block of lookup indices (8 MiB)
    # and small tables: no float64 or 64-bit index copy of the image (another 128 MiB each).
    assert peak < output * 1.75, f"peak {peak / 2**20:.0f} MiB for {output / 2**20:.0f} MiB"


# --- spacing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, modality, source", [
    ("pixel", "DX", "pixel spacing"),
    ("pixel", "CR", "pixel spacing"),
    ("imager+ermf", "DX", "imager pixel spacing / magnification"),
    ("imager", "DX", "imager pixel spacing (at detector)"),
    ("imager", "CR", "imager pixel spacing (at detector)"),
    (None, "CR", None),
])
def test_spacing_precedence(tmp_path: Path, kind: str | None, modality: str,
                            source: str | None) -> None:
    path, spec, _ = _write(tmp_path, modality=modality, spacing=(0.12, 0.15), spacing_kind=kind,
                           magnification=1.25)
    got = read_radiograph(path)
    assert got.spacing_source == source
    if source is None:
        assert got.pixel_spacing_mm is None and "no pixel spacing" in got.notes
    else:
        assert got.pixel_spacing_mm == pytest.approx(expected_spacing(spec))
    if kind == "pixel" and modality == "DX":
        # Pixel Spacing wins over Imager Pixel Spacing / magnification written beside it.
        assert dcmread(path).ImagerPixelSpacing[0] == pytest.approx(0.15)


@pytest.mark.parametrize("value", [b"abc\\def ", b"0.2 ", b"0\\0 ", b"-0.1\\0.1 ", b"nan\\0.1 "])
def test_malformed_pixel_spacing_falls_back_to_imager_spacing(tmp_path: Path,
                                                               value: bytes) -> None:
    path, _, _ = _write(tmp_path, spacing=(0.1, 0.1), spacing_kind="imager+ermf",
                        magnification=2.0)
    _raw(path, 0x00280030, "DS", value)
    got = read_radiograph(path)
    assert got.pixel_spacing_mm == pytest.approx((0.05, 0.05))
    assert "pixel spacing malformed: ignored" in got.notes


@pytest.mark.parametrize("factor", [b"0 ", b"0.5 ", b"big "])
def test_unusable_magnification_leaves_detector_spacing(tmp_path: Path, factor: bytes) -> None:
    path, _, _ = _write(tmp_path, spacing=(0.1, 0.1), spacing_kind="imager+ermf")
    _raw(path, 0x00181114, "DS", factor)
    got = read_radiograph(path)
    assert got.pixel_spacing_mm == pytest.approx((0.1, 0.1))
    assert got.spacing_source == "imager pixel spacing (at detector)"
    assert "estimated radiographic magnification factor unusable: ignored" in got.notes


def test_pixel_aspect_ratio_alone_gives_no_spacing(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path, modality="CR", spacing_kind=None)
    _rewrite(path, PixelAspectRatio=[1, 1])
    got = read_radiograph(path)
    assert got.pixel_spacing_mm is None
    assert "no pixel spacing (pixel aspect ratio 1:1)" in got.notes


def test_real_style_zero_spacing_without_imager_spacing_is_none(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path, modality="CR", spacing_kind=None)
    _raw(path, 0x00280030, "DS", b"0.000\\0.000 ")
    got = read_radiograph(path)
    assert got.pixel_spacing_mm is None and got.spacing_source is None
    assert "pixel spacing malformed: ignored" in got.notes

