"""Texts for people are shaped to their VR and character set; source headers are read
tolerantly (Type 2 attributes present, invalid values emptied, the source untouched)."""

from __future__ import annotations

import logging

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_node.encode.source import REPEATED_TYPE2, known_character_set, tolerant_source
from dicom_node.encode.text import encodable, shape_text, strip_uids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("series 1.2.840.10008.5.1.4.1.1.2 unreadable", "series … unreadable"),
        ("uid=2.25.123456789012345678901234567890.", "uid=….") ,
        ("model 1.2.0 on 10.0.0.1", "model 1.2.0 on …"),
        ("no identifier here", "no identifier here"),
        ("two: 1.2.3.4 and 1.2.826.0.1.3680043.9.7433", "two: … and …"),
    ],
)
def test_strip_uids(text: str, expected: str) -> None:
    assert strip_uids(text) == expected


def test_shape_text_honours_the_vr() -> None:
    long = "A\\B 1.2.840.10008.5.1 " + "é" * 100
    lo = shape_text(long, "LO", "ISO_IR 100")
    assert len(lo) == 64 and lo.endswith("...") and "\\" not in lo and "1.2.840" not in lo
    assert len(shape_text(long, "SH")) == 16
    st = shape_text("line1\nline2\x00\x1b" + "x" * 2000, "ST")
    assert len(st) == 1024 and "\n" in st and "\x00" not in st and "\x1b" not in st
    assert shape_text("a\\b", "UT") == "a\\b"  # UT is single-valued: a backslash is text
    assert "\n" not in shape_text("a\nb", "LO")


@pytest.mark.parametrize(
    ("charset", "text", "expected"),
    [
        (None, "données…", "donn?es..."),
        ("ISO_IR 100", "données…", "données..."),
        (["", "ISO 2022 IR 87"], "données 山田…", "donn?es 山田…"),
        ("ISO_IR 192", "données 山田…", "données 山田…"),
        ("GB18030", "données 王", "données 王"),
    ],
)
def test_encodable_keeps_what_the_character_set_can_write(charset, text, expected) -> None:
    assert encodable(text, charset) == expected


def _raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(tag, vr, len(value), value, 0, False, True)


def test_tolerant_source(caplog: pytest.LogCaptureFixture) -> None:
    source = Dataset()
    source.SOPInstanceUID = "1.2.3.4"
    source[0x00100030] = _raw(0x00100030, "DA", b"1970-13-45")  # PatientBirthDate
    source[0x00100040] = _raw(0x00100040, "CS", b"male")  # PatientSex
    source[0x00101010] = _raw(0x00101010, "AS", b"45")  # PatientAge
    source[0x00100010] = _raw(0x00100010, "PN", b"Doe^John")
    with caplog.at_level(logging.WARNING, logger="dicom_node.encode.source"):
        copy = tolerant_source(source)
    for keyword in REPEATED_TYPE2:
        assert keyword in copy, keyword
    assert copy.PatientBirthDate in (None, "") and copy.PatientSex in (None, "")
    assert "PatientAge" not in copy  # Type 3: dropped, not emptied
    assert str(copy.PatientName) == "Doe^John"
    assert source.get_item(0x00100030).value == b"1970-13-45", "the source is not changed"
    assert "StudyID" not in source
    text = " ".join(caplog.messages)
    assert "PatientBirthDate" in text and "PatientSex" in text and "PatientAge" in text
    assert "1970-13-45" not in text and "male" not in text and "Doe" not in text


@pytest.mark.parametrize(
    ("value", "known"),
    [(None, False), ("ISO_IR 100", True), (["", "ISO 2022 IR 87"], True),
     (["", "ISO 2022 IR 149"], True), ("ISO-8859-1", False)],
)
def test_known_character_set(value, known: bool) -> None:
    ds = Dataset()
    if value is not None:
        ds.SpecificCharacterSet = value
    assert known_character_set(ds) is known
