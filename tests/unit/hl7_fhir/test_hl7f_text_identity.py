"""Text shaping (hl7_fhir.text), name groups and patient systems (hl7_fhir.identity), ER7
fitting and splitting (hl7_fhir.hl7v2.er7) and the study's time zone (hl7_fhir.types)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hl7_fhir.hl7v2 import er7
from hl7_fhir.identity import NameGroup, issuer_system, name_groups, patient_system
from hl7_fhir.samples import sample_study
from hl7_fhir.text import ELLIPSIS, REDACTED, UID_PLACEHOLDER, shape, strip_uids, truncate
from hl7_fhir.types import EncodeOptions, StudyFacts, study_datetime, study_zone

MRN = "http://hospital.example.org/mrn"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see 1.2.840.10008.5.1.4.1.1.2 now", f"see {UID_PLACEHOLDER} now"),
        ("uid 2.25.123456789012345678901234567890.", f"uid {UID_PLACEHOLDER}."),
        ("(1.3.6.1.4.1.9590.100.1.2.1)", f"({UID_PLACEHOLDER})"),
        ("model 1.0.0, 14.25 mL, p=0.93, HL7 2.5.1", "model 1.0.0, 14.25 mL, p=0.93, HL7 2.5.1"),
        ("1.2.3.4 is short", "1.2.3.4 is short"),
        ("v3.2.1.4b is a version tag", "v3.2.1.4b is a version tag"),
    ],
)
def test_uids_are_stripped_and_numbers_kept(text: str, expected: str) -> None:
    assert strip_uids(text) == expected


def test_shape_removes_identifiers_controls_and_caps_length() -> None:
    study = sample_study("ich").model_copy(
        update={"patient_name": "Doe^Jane=山田^花子", "placer_order_number": "PO99"})
    shaped = shape("Jane DOE (PAT177, ACC10042, PO99) 山田: bad\x00 header\tvalue\r\nnext",
                   study)
    assert shaped == (f"{REDACTED} {REDACTED} ({REDACTED}, {REDACTED}, {REDACTED}) "
                      f"{REDACTED}: bad header value\nnext")
    # Words that merely contain a name part stay.
    assert shape("Janet has a Doette", study) == "Janet has a Doette"
    assert shape("   \n\t ") == "-"
    assert len(shape("x" * 10_000)) == 4000


def test_truncate_prefers_a_space_and_ends_with_an_ellipsis() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("alpha beta gamma delta epsilon", 20)
    assert cut.endswith(ELLIPSIS) and len(cut) <= 20
    assert cut == "alpha beta gamma de" + ELLIPSIS  # the space is not in the last tenth
    assert truncate("a" * 95 + " " + "b" * 20, 100) == "a" * 95 + ELLIPSIS
    assert truncate("x" * 50, 10) == "x" * 9 + ELLIPSIS


def test_name_groups_in_pn_order() -> None:
    assert name_groups(None) == ()
    assert name_groups("^^^^") == ()
    groups = name_groups("Yamada^Tarou^^Dr^=山田^太郎=やまだ^たろう")
    assert [g.representation for g in groups] == ["A", "I", "P"]
    assert groups[0] == NameGroup("A", "Yamada", "Tarou", "", "Dr", "")
    assert groups[0].text == "Dr Tarou Yamada"
    assert [g.representation for g in name_groups("==やまだ^たろう")] == ["P"]


def _study(**update: object) -> StudyFacts:
    return sample_study("ich").model_copy(update={
        "patient_id_issuer_universal_id": None, "patient_id_issuer_universal_id_type": None,
        **update})


@pytest.mark.parametrize(
    ("uid", "kind", "expected"),
    [
        ("1.2.3.4", "ISO", "urn:oid:1.2.3.4"),
        ("https://mpi.example.org/ids", "URI", "https://mpi.example.org/ids"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "UUID",
         "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("hospital.example.org", "DNS", None),
        ("1.2.3.4", None, None),
    ],
)
def test_issuer_qualifiers_give_a_system(uid: str, kind: str | None,
                                          expected: str | None) -> None:
    study = _study(patient_id_issuer_universal_id=uid,
                   patient_id_issuer_universal_id_type=kind)
    assert issuer_system(study) == expected


def test_patient_system_precedence() -> None:
    mapped = EncodeOptions(patient_id_systems={"HOSPITAL": MRN},
                           patient_id_system="urn:oid:9.9.9.9")
    qualified = _study(patient_id_issuer_universal_id="1.2.3.4",
                       patient_id_issuer_universal_id_type="ISO")
    assert patient_system(qualified, mapped) == MRN
    assert patient_system(qualified, EncodeOptions()) == "urn:oid:1.2.3.4"
    assert patient_system(_study(), EncodeOptions(patient_id_system=MRN)) == MRN
    assert patient_system(_study(), EncodeOptions()) is None
    with pytest.raises(ValidationError):
        EncodeOptions(patient_id_systems={"HOSPITAL": "MRN"})


def test_fit_never_cuts_an_escape_sequence() -> None:
    assert er7.fit("a|b") == "a\\F\\b"
    fitted = er7.fit("|" * 100, 20)
    assert fitted == "\\F\\" * 6 + ELLIPSIS
    assert er7.namespace("X" * 21) == "" and er7.namespace("RIS^1") == "RIS\\S\\1"


def test_formatted_lines_split_at_breaks_within_the_limit() -> None:
    text = ("word " * 60).strip() + "\n" + "|" * 100
    pieces = er7.formatted_lines(text, limit=50)
    assert all(0 < len(p) <= 50 for p in pieces)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    rejoined = " ".join(pieces)
    assert rejoined.count("word") == 60 and rejoined.count("\\F\\") == 100
    assert er7.formatted_lines("") == [""]
    assert er7.formatted_lines("a\nb") == ["a\\.br\\b"]


def test_dtm_shows_instants_in_a_zone() -> None:
    at = datetime(2024, 3, 5, 15, tzinfo=UTC)
    assert er7.dtm(at) == "20240305150000+0000"
    assert er7.dtm(at, ZoneInfo("America/New_York")) == "20240305100000-0500"
    assert er7.dtm(date(2024, 3, 5), ZoneInfo("Asia/Tokyo")) == "20240305"


def test_study_zone_precedence_and_offset_range() -> None:
    study = sample_study("ich").model_copy(update={"study_time": time(23, 30)})
    berlin = ZoneInfo("Europe/Berlin")
    assert study_zone(study, None) is UTC
    assert study_zone(study, berlin) is berlin
    tokyo = study.model_copy(update={"timezone_offset": timedelta(hours=9)})
    assert study_zone(tokyo, berlin) == timezone(timedelta(hours=9))
    value = study_datetime(tokyo, berlin)
    assert isinstance(value, datetime)
    assert value.isoformat() == "2024-03-05T23:30:00+09:00"
    for bad in (timedelta(hours=15), timedelta(hours=-13), timedelta(seconds=30)):
        with pytest.raises(ValidationError):
            StudyFacts.model_validate({**study.model_dump(), "timezone_offset": bad})
