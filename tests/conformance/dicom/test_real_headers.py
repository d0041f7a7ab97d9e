"""The "not analysed" report built from headers the node did not make: every storable file in
pydicom's charset_files (written by other toolkits in a dozen character sets, ISO 2022 code
extensions included) as the source. The SR must pass dciodvfy and carry the patient's name and
the study description byte for byte, in the source's own character set."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom_node.encode import NotAnalysed, encode_outputs
from dicom_node.encode.samples import fixed_clock, sample_algorithm
from dicom_node.encode.types import EncodeContext, Pipeline
from tests.e2e.e2e_support import dciodvfy_errors

CHARSETS = Path(pydicom.__file__).parent / "data" / "charset_files"
SOURCES = sorted(p for p in CHARSETS.glob("chr*.dcm")
                 if "SOPClassUID" in pydicom.dcmread(p, stop_before_pixels=True))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_not_analysed_report_from_a_real_header(path: Path, tmp_path: Path) -> None:
    source = pydicom.dcmread(path, stop_before_pixels=True)
    ctx = EncodeContext.for_job(str(source.StudyInstanceUID), Pipeline.ICH,
                                sample_algorithm("real-headers"), fixed_clock())
    sr = encode_outputs([source], NotAnalysed("the series has no usable head CT"), ctx).sr
    out = tmp_path / "sr.dcm"
    sr.save_as(out, enforce_file_format=True)
    assert dciodvfy_errors(out) == []
    written = pydicom.dcmread(out)
    raw_source = pydicom.dcmread(path, stop_before_pixels=True)  # untouched: values as bytes
    for keyword in ("PatientName", "StudyDescription"):
        element = raw_source.get_item(keyword)
        if element is not None and element.value:
            assert written.get_item(keyword).value == element.value, keyword
    assert written.get("SpecificCharacterSet") == source.get("SpecificCharacterSet")
