"""dicom_node.render: display grey levels (PS3.3 C.11), drawing, PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.render import (
    Box,
    display_image,
    draw_result,
    glyph,
    outline,
    png_bytes,
    text_mask,
    window_uint8,
    wrap,
)


def _image(pixels: np.ndarray, photometric: str = "MONOCHROME2", **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    return ds


def test_header_window_after_rescale() -> None:
    # stored 1024 + intercept -1024 = 0 HU; window 40/80 -> 0 HU is black, 40 HU mid, 80 white
    stored = np.array([[1024, 1064, 1104, 2000]], dtype=np.uint16)
    ds = _image(stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=[40, 400],
                WindowWidth=[80, 2000])
    out = display_image(ds)
    assert out.dtype == np.uint8 and out.shape == (1, 4)
    assert out[0, 0] == 0 and out[0, 3] == 255
    assert 125 <= out[0, 1] <= 131
    assert out[0, 2] == 255


def test_monochrome1_is_inverted_and_percentile_window_without_header() -> None:
    ramp = np.arange(100, dtype=np.uint16).reshape(10, 10) * 10
    m2 = display_image(_image(ramp))
    m1 = display_image(_image(ramp, "MONOCHROME1"))
    assert m2[0, 0] == 0 and m2[-1, -1] == 255
    assert np.array_equal(m1, 255 - m2)
    assert np.all(np.diff(m2.ravel().astype(int)) >= 0)


def test_multi_frame_gives_the_frame() -> None:
    frames = np.stack([np.zeros((8, 8), np.uint16), np.full((8, 8), 500, np.uint16)])
    frames[0, 0, 0] = 500
    frames[1, 0, 0] = 0
    ds = _image(frames, WindowCenter=250, WindowWidth=500)
    assert display_image(ds, frame=1)[4, 4] == 255
    assert display_image(ds)[4, 4] == 0
    with pytest.raises(ValueError):
        display_image(ds, frame=2)


def test_enhanced_image_uses_the_frame_functional_groups() -> None:
    frames = np.stack([np.full((4, 4), 100, np.uint16), np.full((4, 4), 100, np.uint16)])
    ds = _image(frames)
    shared, first, second = Dataset(), Dataset(), Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1, -50
    shared.PixelValueTransformationSequence = [transform]
    for item, center in ((first, 50), (second, 1000)):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 10
        item.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [first, second]
    # 100 - 50 = 50: the middle of frame 1's window, far below frame 2's
    assert 125 <= display_image(ds, frame=0)[0, 0] <= 145
    assert display_image(ds, frame=1)[0, 0] == 0


def test_window_function_matches_the_standard_formula() -> None:
    values = np.array([-1.0, 0.0, 49.5, 100.0, 200.0])
    out = window_uint8(values, 50.0, 101.0)
    assert out[0] == 0 and out[-1] == 255 and out[3] == 255
    assert 126 <= out[2] <= 129


def test_mask_outlines_boxes_and_heatmap_in_colour() -> None:
    gray = np.full((64, 64), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    heat = np.zeros((64, 64), np.float32)
    heat[50:60, 5:15] = 1.0
    out = draw_result(gray, masks=[(mask, (255, 0, 0))],
                      boxes=[Box(45, 5, 60, 25, "X 0.9", (0, 255, 0))], heatmap=heat)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert tuple(out[20, 30]) == (255, 0, 0)  # the outline
    assert tuple(out[30, 30]) == (100, 100, 100)  # the inside stays grey
    assert tuple(out[15, 45]) == (0, 255, 0)  # the box's left edge
    assert out[55, 10, 0] > out[55, 10, 2]  # the heatmap's peak is warm
    assert tuple(out[2, 2]) == (100, 100, 100)  # no banner asked for


def test_banner_is_burned_in_at_the_top_and_wrapped() -> None:
    gray = np.full((128, 128), 200, np.uint8)
    out = draw_result(gray, banner="AI RESULT - NOT FOR DIAGNOSIS")
    yellow = np.all(out == (255, 255, 0), axis=2)
    rows = np.nonzero(yellow.any(axis=1))[0]
    assert rows.size and rows.max() < 30  # two lines of 7 px at the top
    assert not yellow[40:].any()
    assert wrap("AI RESULT - NOT FOR DIAGNOSIS", 20) == ["AI RESULT - NOT FOR", "DIAGNOSIS"]


def test_font_and_outline_helpers() -> None:
    assert text_mask("A").shape == (7, 6)
    assert np.array_equal(text_mask("A")[:, :5], glyph("a"))
    assert text_mask("AB", 2).shape == (14, 24)
    assert not np.array_equal(glyph("O"), glyph("0"))
    # every character the node's captions use has a glyph of its own (not the hollow box)
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/%()=+<>'#?!":
        assert not np.array_equal(glyph(char), glyph("\u25a1")), char
    square = np.zeros((5, 5), bool)
    square[1:4, 1:4] = True
    ring = outline(square)
    assert ring.sum() == 8 and not ring[2, 2]


def test_png_round_trip() -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (17, 23, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(rgb))))
    assert np.array_equal(decoded, rgb)
    grey = rgb[..., 0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(grey)))), grey)
    with pytest.raises(ValueError):
        png_bytes(rgb.astype(np.float32))
