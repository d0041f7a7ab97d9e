"""Every real CR/DX file that pydicom, pydicom-data and deid-data ship, through read_radiograph.

Each file gives either a RadiographImage with sane facts or a RadiographReadError with a reason,
never another exception. Intensities are checked against pydicom's own decoding and Modality
LUT: equal for MONOCHROME2, mirrored over the stored range for MONOCHROME1. The header facts
expected of each file are listed here, so a change in the reader's rules shows up as a failure.
pydicom-data and deid-data are in the `dev` extra (pyproject.toml); without them this test fails
rather than pass on fewer files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut

from dicom_node.radiograph import RadiographImage, read_radiograph
from dicom_node.volume.errors import RadiographReadError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_PACKAGES = {"pydicom": "data", "data_store": "data", "deid_data": "data"}
"""Package -> its folder of DICOM files (pydicom's own, pydicom-data's, deid-data's)."""

# path relative to the package -> what the reader must give: an error reason, or facts.
_EXPECTED: dict[str, dict[str, Any]] = {
    "deid_data/data/animals/cat.dcm": dict(
        shape=(2614, 3072), photometric="MONOCHROME2", body_part="CHEST", laterality=None,
        view="AP", spacing=(0.14, 0.14), spacing_source="pixel spacing"),
    **{f"data_store/data/RG1_{kind}.dcm": dict(
        shape=(1955, 1841), photometric="MONOCHROME1", body_part="CHEST", laterality=None,
        view="PA", spacing=None, spacing_source=None,
        note="pixel spacing malformed: ignored") for kind in ("UNCI", "UNCR", "J2KI", "J2KR")},
    **{f"data_store/data/RG3_{kind}.dcm": dict(
        shape=(1760, 1760), photometric="MONOCHROME1", body_part="LEG", laterality="right",
        view="AP", spacing=None, spacing_source=None, body_part_source="study description")
       for kind in ("UNCI", "UNCR", "J2KI", "J2KR")},
    **{f"pydicom/data/charset_files/{name}.dcm": dict(reason="unreadable_pixels")
       for name in ("chrJapMulti", "chrJapMultiExplicitIR6", "chrKoreanMulti")},
    **{f"pydicom/data/test_files/dicomdirtests/77654033/{series}": dict(
        shape=(16, 16), photometric="MONOCHROME1", body_part="CSPINE", laterality=None,
        spacing=(0.1, 0.1), spacing_source="imager pixel spacing (at detector)")
       for series in ("CR1/6154", "CR2/6247", "CR3/6278")},
}


def _roots() -> dict[str, Path]:
    roots = {}
    for package, folder in _PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            pytest.fail(f"{package} is not installed: pip install -e '.[dev]'")
        roots[package] = Path(spec.origin).parent / folder
    return roots


def _radiographs() -> list[str]:
    """Relative paths of every CR/DX file (by Modality or SOP Class) under the three roots."""
    found = []
    for package, root in _roots().items():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except Exception:  # not DICOM: README files, DICOMDIRs broken on purpose...
                continue
            sop_class = str(ds.get("SOPClassUID", ""))
            if ds.get("Modality") in ("CR", "DX") or sop_class in _CR_DX_CLASSES:
                found.append(f"{package}/{path.relative_to(root.parent)}")
    return found


_CR_DX_CLASSES = {"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
                  "1.2.840.10008.5.1.4.1.1.1.1.1"}


def test_the_corpus_is_the_expected_one() -> None:
    """Every CR/DX file found has an expectation, and every expectation was found."""
    assert sorted(_radiographs()) == sorted(_EXPECTED)


def _absolute(relative: str) -> Path:
    package, rest = relative.split("/", 1)
    return _roots()[package].parent / rest


@pytest.mark.parametrize("relative", sorted(_EXPECTED))
def test_real_radiograph(relative: str) -> None:
    expected = _EXPECTED[relative]
    path = _absolute(relative)
    try:
        got = read_radiograph(path)
    except RadiographReadError as error:
        assert error.reason == expected.get("reason"), str(error)
        return
    assert "reason" not in expected, f"expected refusal {expected.get('reason')}"
    assert isinstance(got, RadiographImage)
    assert got.pixels.dtype == np.float32 and got.pixels.shape == expected["shape"]
    assert (got.rows, got.columns) == expected["shape"]
    assert np.isfinite(got.pixels).all() and got.pixels.max() > got.pixels.min()
    assert got.photometric == expected["photometric"]
    assert got.body_part == expected["body_part"]
    assert got.laterality == expected["laterality"]
    assert got.spacing_source == expected["spacing_source"]
    if expected["spacing"] is None:
        assert got.pixel_spacing_mm is None
    else:
        assert got.pixel_spacing_mm == pytest.approx(expected["spacing"])
    for key in ("view", "body_part_source"):
        if key in expected:
            assert getattr(got, key) == expected[key]
    if "note" in expected:
        assert expected["note"] in got.notes
    _check_intensities(path, got)


def _check_intensities(path: Path, got: RadiographImage) -> None:
    """pydicom's own decoding and Modality LUT, mirrored over the stored range if MONOCHROME1."""
    ds = dcmread(path)
    raw = ds.pixel_array
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    if got.photometric == "MONOCHROME1":
        assert "MONOCHROME1 inverted" in got.notes
        ends = np.array([0, 2 ** int(ds.BitsStored) - 1])
        low, high = np.asarray(apply_modality_lut(ends, ds), dtype=np.float64)
        values = (low + high) - values
        # The inversion really happened: brightest stored value -> lowest output.
        assert got.pixels.ravel()[np.argmax(raw)] == got.pixels.min()
    np.testing.assert_allclose(got.pixels, values, rtol=1e-6, atol=1e-3)
