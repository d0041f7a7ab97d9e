"""Synthetic CR/DX files in every transfer syntax and IOD variant: valid for dciodvfy
(dicom3tools) and read back exactly by read_radiograph.

Compressed files are written by DCMTK (dcmcjpeg, dcmcjpls, dcmcrle) or pydicom's encoders
(JPEG 2000 through pylibjpeg-openjpeg, deflate). dciodvfy cannot parse a deflated data set, so a
deflated file is inflated by DCMTK's dcmconv and the inflated copy is validated.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from dicom_node.radiograph import read_radiograph
from tests.support.radiographs import (
    TRANSFER_SYNTAXES,
    RadiographSpec,
    expected_pixels,
    expected_spacing,
    write_radiograph,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_SYNTAX_UIDS = {
    "explicit": ExplicitVRLittleEndian, "jpeg-lossless": JPEGLosslessSV1,
    "jpeg-ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless, "rle": RLELossless,
    "deflate": DeflatedExplicitVRLittleEndian,
}
_IODS = {
    "CR": "CRImage", "DX FOR PRESENTATION": "DXImageForPresentation",
    "DX FOR PROCESSING": "DXImageForProcessing",
}


def _tool(name: str) -> str:
    found = shutil.which(name, path="/usr/bin")
    if found is None:
        pytest.skip(f"{name} is not installed: run scripts/setup.sh")
    return found


def _dciodvfy(path: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(IOD dciodvfy recognised, its Error lines) for the file, inflated first if deflated."""
    if dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == \
            DeflatedExplicitVRLittleEndian:
        inflated = tmp_path / f"{path.stem}_inflated.dcm"
        done = subprocess.run([_tool("dcmconv"), "+te", str(path), str(inflated)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        path = inflated
    done = subprocess.run([_tool("dciodvfy"), "-new", str(path)], capture_output=True,
                          text=True, errors="replace", timeout=60, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return (lines[0].strip() if lines else ""), [ln for ln in lines if ln.startswith("Error")]


def _image(rows: int, columns: int) -> np.ndarray:
    rng = np.random.default_rng(rows * columns)
    y, x = np.mgrid[0:rows, 0:columns]
    image = 0.15 + 0.5 * (x + y) / (rows + columns) + 0.1 * rng.random((rows, columns))
    image[rows // 3: rows // 3 + 6, :] = 0.95  # a bright bone-like band
    return image


def _check(tmp_path: Path, name: str, image: np.ndarray, **changes: Any) -> None:
    spec = RadiographSpec(**changes)
    path = write_radiograph(tmp_path / f"{name}.dcm", image, spec)
    iod, errors = _dciodvfy(path, tmp_path)
    kind = spec.modality if spec.modality == "CR" else f"DX {spec.presentation_intent}"
    assert iod == _IODS[kind]
    assert errors == []
    assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == \
        _SYNTAX_UIDS[spec.transfer_syntax]
    got = read_radiograph(path)
    np.testing.assert_array_equal(got.pixels, expected_pixels(image, spec))
    spacing = expected_spacing(spec)
    if spacing is None:
        assert got.pixel_spacing_mm is None
    else:
        assert got.pixel_spacing_mm == pytest.approx(spacing)
    assert got.body_part == spec.body_part


@pytest.mark.parametrize("syntax", TRANSFER_SYNTAXES)
@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_each_transfer_syntax(tmp_path: Path, syntax: str, bits: int, photometric: str) -> None:
    _check(tmp_path, f"{syntax}_{bits}", _image(48, 40), transfer_syntax=syntax, bits=bits,
           photometric=photometric, modality="CR" if bits == 8 else "DX")


@pytest.mark.parametrize("name, changes", [
    ("cr_rescale", {"modality": "CR"}),
    ("cr_lut_sequence", {"modality": "CR", "modality_lut": "sequence", "voi": None}),
    ("cr_voi_lut", {"modality": "CR", "voi": "lut-sequence", "photometric": "MONOCHROME1"}),
    ("cr_no_spacing", {"modality": "CR", "spacing_kind": None, "modality_lut": None}),
    ("cr_imager", {"modality": "CR", "spacing_kind": "imager", "body_part": "HAND"}),
    ("dx_voi_lut", {"voi": "lut-sequence", "bits": 16}),
    ("dx_imager_ermf", {"spacing_kind": "imager+ermf", "body_part": "ANKLE"}),
    ("dx_processing", {"presentation_intent": "FOR PROCESSING", "voi": None}),
    ("dx_processing_m1", {"presentation_intent": "FOR PROCESSING", "voi": None,
                          "photometric": "MONOCHROME1", "transfer_syntax": "jpeg-ls"}),
    ("dx_padding", {"padding_value": 0, "body_part": "KNEE", "laterality": "R"}),
    ("dx_chest_unpaired", {"body_part": "CHEST", "laterality": "U", "view": "AP"}),
])
def test_iod_variants(tmp_path: Path, name: str, changes: dict[str, Any]) -> None:
    image = _image(40, 56)
    if changes.get("padding_value") is not None:
        image[:, :4] = np.nan
    _check(tmp_path, name, image, **changes)


@pytest.mark.parametrize("syntax", ["jpeg-lossless", "jpeg2000", "jpeg-ls"])
def test_large_compressed_radiograph(tmp_path: Path, syntax: str) -> None:
    """A 2k x 2.5k 16-bit image through each compressed syntax (sizes the issue names)."""
    _check(tmp_path, f"large_{syntax}", _image(2048, 2560), transfer_syntax=syntax, bits=16)
