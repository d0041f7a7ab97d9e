"""Any legal source header (and some illegal ones) gives valid SEG, SR and KOS, for results
and for "not analysed": Type 2 attributes absent or empty, values that break their VR, and
every common Specific Character Set, checked by dciodvfy and by reading the bytes back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.encode import NotAnalysed, encode_outputs
from tests.conformance.dicom.headers import (
    INVALID_VALUES,
    TYPE2,
    VARIANTS,
    Source,
    ct_head_variant,
)

REASON = ("series 1.2.826.0.1.3680043.10.1563.9.42 cannot be read: C:\\spool\\x — "
          "données illisibles " + "détail " * 140)
"""A long not-analysed reason with a UID, a backslash and non-ASCII text (about 1000 chars)."""


def _encode_all(variant: Source) -> list[Path]:
    paths = []
    for label, findings in (("result", variant.findings), ("not-analysed", NotAnalysed(REASON))):
        outputs = encode_outputs(variant.sources, findings, variant.ctx)
        for ds in outputs.datasets():
            path = variant.folder / f"{label}-{ds.Modality}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_outputs_are_valid_for_any_source_header(
    name: str, tmp_path: Path, validators, caplog: pytest.LogCaptureFixture
) -> None:
    variant = ct_head_variant(tmp_path, VARIANTS[name])
    with caplog.at_level(logging.WARNING, logger="dicom_node.encode"):
        paths = _encode_all(variant)
    assert {p.name for p in paths} == {
        "result-SEG.dcm", "result-KO.dcm", "result-SR.dcm", "not-analysed-SR.dcm"}
    for path in paths:
        report = validators.run("dciodvfy", "-new", path)
        assert validators.errors(report) == [], f"{name} {path.name}:\n{report}"
        ds = dcmread(path)
        for keyword in TYPE2:  # Type 2: always present, empty when unknown or invalid
            assert keyword in ds, (name, path.name, keyword)
        if name in INVALID_VALUES:
            keyword, value = INVALID_VALUES[name]
            assert ds[keyword].value in (None, ""), (path.name, keyword)
    if name in INVALID_VALUES:
        keyword, value = INVALID_VALUES[name]
        warned = [r.getMessage() for r in caplog.records if keyword in r.getMessage()]
        assert warned, f"no warning names {keyword}"
        assert all(value not in message for message in caplog.messages), "value logged"


@pytest.mark.parametrize("name", ["empty-SliceThickness", "absent-SliceThickness",
                                  "slice-thickness-word"])
def test_seg_slice_thickness_comes_from_the_measured_spacing(name: str, tmp_path: Path) -> None:
    """Slice Thickness is Type 2 in the Image Plane module; the SEG's Pixel Measures needs a
    value, which is the spacing the mask was measured on (voxel volume / pixel area)."""
    variant = ct_head_variant(tmp_path, VARIANTS[name])
    seg = encode_outputs(variant.sources, variant.findings, variant.ctx).seg
    assert seg is not None
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(5.0)
    assert variant.sources[0].get("SliceThickness") in (None, "", "abc") or name.startswith(
        "absent")


def _values(ds: Dataset) -> dict[int, object]:
    return {tag: ds[tag].value for tag in ds.keys() if tag != 0x7FE00010}


@pytest.mark.parametrize("name", ["birthdate-month-13", "empty-SliceThickness",
                                  "absent-all-type2"])
def test_the_source_headers_are_not_changed(name: str, tmp_path: Path) -> None:
    variant = ct_head_variant(tmp_path, VARIANTS[name])
    first = variant.sources[0]
    birth_date = first.get_item(0x00100030)
    before = [_values(ds) for ds in variant.sources[1:]]
    encode_outputs(variant.sources, variant.findings, variant.ctx)
    assert first.get_item(0x00100030) is birth_date, "the first source's element is untouched"
    assert [_values(ds) for ds in variant.sources[1:]] == before
    assert first.get("SliceThickness") != "5.0" or name != "empty-SliceThickness"


# --- character sets (PS3.5 6.1; PS3.3 C.12.1.1.2) ------------------------------------------

CHARACTER_SETS = {
    "japanese-iso2022": (
        ["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "頭部ＣＴ"),
    "latin1": ("ISO_IR 100", "Müller^Jörg^^Dr.", "Schädel nativ"),
    "utf8": ("ISO_IR 192", "Ηλίας^Müller=山田^太郎", "Κεφαλή CT"),
    "gb18030": ("GB18030", "Wang^XiaoDong=王^小东", "头部平扫"),
    "korean-iso2022": (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "두부 CT"),
}
_TEXT_TAGS = {
    "PatientName": 0x00100010,
    "ReferringPhysicianName": 0x00080090,
    "StudyDescription": 0x00081030,
}


def _raw_value(path: Path, tag: int) -> bytes:
    """The stored bytes of a top-level element, as read without decoding."""
    element = dcmread(path).get_item(tag)
    assert element is not None and element.is_raw, hex(tag)
    return bytes(element.value)


@pytest.mark.parametrize("name", sorted(CHARACTER_SETS))
def test_text_attributes_keep_their_bytes_and_character_set(
    name: str, tmp_path: Path, validators
) -> None:
    charset, person, description = CHARACTER_SETS[name]
    variant = ct_head_variant(
        tmp_path, character_set=charset,
        texts={"PatientName": person, "ReferringPhysicianName": person,
               "StudyDescription": description},
    )
    source_path = sorted((tmp_path / "src").glob("*.dcm"))[0]
    paths = _encode_all(variant)
    for path in paths:
        for keyword, tag in _TEXT_TAGS.items():
            assert _raw_value(path, tag) == _raw_value(source_path, tag), (path.name, keyword)
        # pydicom decodes Specific Character Set on reading: its value, the same as the source's
        assert dcmread(path).SpecificCharacterSet == dcmread(source_path).SpecificCharacterSet
        assert str(dcmread(path).PatientName) == person
        report = validators.run("dciodvfy", "-new", path)
        assert validators.errors(report) == [], f"{path.name}:\n{report}"


def _texts(ds: Dataset) -> list[str]:
    def walk(items):
        for item in items:
            yield item
            yield from walk(item.get("ContentSequence", []))
    return [i.TextValue for i in walk(ds.ContentSequence) if i.ValueType == "TEXT"]


@pytest.mark.parametrize("name", ["japanese-iso2022", "latin1"])
def test_a_long_reason_is_shaped_for_the_report(name: str, tmp_path: Path) -> None:
    charset, person, _ = CHARACTER_SETS[name]
    variant = ct_head_variant(tmp_path, character_set=charset, texts={"PatientName": person})
    sr = encode_outputs(variant.sources, NotAnalysed(REASON), variant.ctx).sr
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    text = next(t for t in _texts(dcmread(path)) if t.startswith("Not analysed"))
    assert "1.2.826.0.1.3680043" not in text, "UIDs are stripped from texts for people"
    assert len(text) <= 1024
    assert text.endswith("...")
    assert "\\" in text  # a TEXT item is UT: a backslash is an ordinary character there
    if name == "latin1":
        assert "données" in text and "…" not in text  # "…" is not Latin-1: written "..."
    else:
        assert "donn?es" in text  # é is not in ISO IR 6 / JIS X 0208: replaced, not garbled
