"""The header as the receive path reads it (the walker's element positions as a data set of
undecoded elements, `parse._header_dataset`; values straight from their bytes where
`parse.plain_text` / `parse.plain_int` allow) is exactly what pydicom gives: every header below is
read three ways, as the receive path does, with the plain readers switched off (every value
through pydicom), and with pydicom's own reader (`read_dataset`) for the header as well, and the
results (header, or refusal) must be equal. Odd values, character sets, VRs other than the
dictionary's, and each native transfer syntax."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

import dicom_node.index.parse as parse
import dicom_node.index.values as values
from dicom_node.index.headers import read_header
from tests.integration.dicom_node.damaged_corpus import ct_dataset
from tests.integration.dicom_node.odd_headers import ODD_HEADERS, set_raw

SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)


def _raw(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _as_vr(keyword: str, vr: str, value: bytes) -> Callable[[Dataset], None]:
    """An element written with another VR than the dictionary's (explicit VR only)."""
    def change(ds: Dataset) -> None:
        tag = Tag(keyword)
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    return change


def _values(**raw: bytes) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword, value in raw.items():
            set_raw(ds, keyword, value)
    return change


def _odd(case) -> Callable[[Dataset], None]:  # type: ignore[no-untyped-def]
    def change(ds: Dataset) -> None:
        built = case.build()
        for element in built:
            if element.tag.group != 0x7FE0:
                ds[element.tag] = built.get_item(element.tag)
    return change


def _sequences(ds: Dataset) -> None:
    """A sequence (with an item holding a nested sequence) and private elements between the
    header values the receive path reads."""
    item, nested = Dataset(), Dataset()
    nested.CodeValue, nested.CodingSchemeDesignator = "T-A0100", "SRT"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    item.PurposeOfReferenceCodeSequence = [nested]
    ds.ReferencedImageSequence = [item, Dataset()]
    block = ds.private_block(0x0029, "INFERNODE TEST", create=True)
    block.add_new(0x10, "LO", "private value")
    block.add_new(0x11, "OB", b"\x00\x01\x02\x03")


CASES: dict[str, Callable[[Dataset], None]] = {
    "with-sequences-and-private-elements": _sequences,
    **{f"odd-{case.name}": _odd(case) for case in ODD_HEADERS},
    "uids-nul-padded": _values(SOPClassUID=b"1.2.840.10008.5.1.4.1.1.2\0",
                               SeriesInstanceUID=b"1.2.3.4.5\0"),
    "uid-spaces": _values(StudyInstanceUID=b" 1.2.3.4 "),
    "image-type-padded": _values(ImageType=b"ORIGINAL\\PRIMARY\\AXIAL "),
    "image-type-empty-values": _values(ImageType=b"\\DERIVED\\\\ LOCALIZER \0"),
    "image-type-empty": _values(ImageType=b""),
    "image-type-latin-1": _values(SpecificCharacterSet=b"ISO_IR 100",
                                  ImageType="ORIGINAL\\PRIMÄR".encode("latin-1")),
    "modality-nul": _values(Modality=b"CT\0\0"),
    "modality-empty": _values(Modality=b""),
    "text-control-characters": _values(SeriesDescription=b"\tHead\r\n"),
    "text-shift-jis": _values(SpecificCharacterSet=b"ISO_IR 13",
                              SeriesDescription=b"HEAD~ROUTINE"),
    "text-gb18030": _values(SpecificCharacterSet=b"GB18030",
                            ProtocolName=b"Brain  plain "),
    "numbers-padded": _values(InstanceNumber=b" 12 ", SeriesNumber=b"+7",
                              ImagesInAcquisition=b"007"),
    "numbers-empty": _values(InstanceNumber=b"", SliceThickness=b""),
    "frames-padded": _values(NumberOfFrames=b"1 "),
    "frames-plus": _values(NumberOfFrames=b"+1"),
    "frames-fraction": _values(NumberOfFrames=b"1.0"),
    "frames-text": _values(NumberOfFrames=b"one"),
    "frames-two": _values(NumberOfFrames=b"2"),
    "frames-empty": _values(NumberOfFrames=b""),
    "rows-missing": lambda ds: ds.__delitem__(Tag("Rows")),
    "rows-empty": _as_vr("Rows", "US", b""),
    "rows-two-values": _as_vr("Rows", "US", b"\x08\x00\x08\x00"),
    "rows-as-ss": _as_vr("Rows", "SS", b"\x08\x00"),
    "rows-as-un": _as_vr("Rows", "UN", b"\x08\x00"),
    "columns-as-ob": _as_vr("Columns", "OB", b"\x08\x00"),
    "samples-two-values": _as_vr("SamplesPerPixel", "US", b"\x01\x00\x01\x00"),
    "uid-as-lo": _as_vr("SOPInstanceUID", "LO", b"1.2.3.4.5.6 "),
    "modality-as-un": _as_vr("Modality", "UN", b"CT"),
    "description-as-ut": _as_vr("SeriesDescription", "UT", b"Head "),
    "ybr-422": _values(SamplesPerPixel=b"\x03\x00",
                       PhotometricInterpretation=b"YBR_FULL_422"),
    "ybr-422-nul": _values(SamplesPerPixel=b"\x03\x00",
                           PhotometricInterpretation=b"YBR_FULL_422\0\0"),
    "ybr-422-padded": _values(SamplesPerPixel=b"\x03\x00",
                              PhotometricInterpretation=b" YBR_PARTIAL_422 "),
    "rgb-multi": _values(SamplesPerPixel=b"\x03\x00",
                         PhotometricInterpretation=b"RGB\\YBR_FULL_422"),
}


def _read(raw: bytes, ds: Dataset, syntax: str) -> object:
    try:
        return read_header(raw, expected_sop_class=str(ds.SOPClassUID),
                           expected_sop_instance=str(ds.SOPInstanceUID),
                           transfer_syntax=syntax)
    except Exception as exc:  # noqa: BLE001 - the refusal is the result compared
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_plain_reading_equals_pydicom_decoding(name, syntax, monkeypatch):
    original = ct_dataset(size=8)
    ds = ct_dataset(size=8)
    CASES[name](ds)
    try:
        raw = _raw(ds, syntax)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"pydicom cannot write this case in {syntax}: {type(exc).__name__}")
    plain = _read(raw, original, syntax)
    with monkeypatch.context() as patched:
        patched.setattr(parse, "plain_text", lambda *a, **k: parse.NOT_PLAIN)
        patched.setattr(parse, "plain_int", lambda *a, **k: parse.NOT_PLAIN)
        patched.setattr(values, "plain_text", lambda *a, **k: parse.NOT_PLAIN)
        decoded = _read(raw, original, syntax)
        patched.setattr(parse, "_header_dataset", _read_by_pydicom)
        by_pydicom = _read(raw, original, syntax)
    assert plain == decoded == by_pydicom


def _read_by_pydicom(walker, buf: bytes, start: int) -> Dataset:  # type: ignore[no-untyped-def]
    """The header as pydicom's own reader reads it (the receive path's former step 3)."""
    end = walker.pixels.header_at if walker.pixels is not None else len(buf)
    return read_dataset(BytesIO(buf[start:end]), walker.implicit, walker.little)


def test_the_plain_readers_answer_for_plain_values_and_step_aside_otherwise():
    ds = ct_dataset(size=8)
    set_raw(ds, "SeriesDescription", b"Head plain ")
    set_raw(ds, "InstanceNumber", b" 12 ")
    raw = _raw(ds, ExplicitVRLittleEndian)
    parsed = parse.parse_instance(raw, ExplicitVRLittleEndian).dataset
    assert parse.plain_text(parsed, "SeriesDescription").rstrip() == "Head plain"
    assert parse.plain_int(parsed, "InstanceNumber") == 12
    assert parse.plain_int(parsed, "Rows") == 8
    assert parse.plain_text(parsed, "ReasonForStudy") is None  # absent
    assert parse.plain_text(parsed, "ImageType") is parse.NOT_PLAIN  # a backslash
    assert parse.plain_text(parsed, "ImageType", multi=True) == "ORIGINAL\\PRIMARY\\AXIAL"
    set_raw(parsed, "ProtocolName", "Schädel".encode("latin-1"))
    assert parse.plain_text(parsed, "ProtocolName") is parse.NOT_PLAIN
    parsed.Modality  # noqa: B018 - decoded by pydicom now: no longer read from bytes
    assert parse.plain_text(parsed, "Modality") is parse.NOT_PLAIN
