"""ORU^R01 identity, character set, time and text rules (STANDARDS.md "Identity and time",
"HL7 v2.5.1 ORU^R01"), each message parsed strictly by hl7apy and the fields read back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from pydantic import ValidationError

from hl7_fhir import codes
from hl7_fhir.hl7v2 import build_oru
from hl7_fhir.samples import (
    SAMPLE_ISSUER_OID,
    fixed_clock,
    sample_device,
    sample_findings,
    sample_study,
)
from hl7_fhir.text import ELLIPSIS, MAX_TEXT_CHARS
from hl7_fhir.types import EncodeOptions, StudyFacts

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"
UID_LIKE = re.compile(r"(?<![\w.])[0-2](?:\.\d+){3,}")


def _oru(study: StudyFacts, **kwargs: Any) -> tuple[str, Any]:
    text = build_oru(study, sample_findings("ich"), sample_device(), fixed_clock(), "CTL1",
                     **kwargs)
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    return text, message


def _order(message: Any) -> Any:
    return message.oru_r01_patient_result.oru_r01_order_observation


def _pid(message: Any) -> Any:
    return message.oru_r01_patient_result.oru_r01_patient.pid


def _segments(text: str, name: str) -> list[list[str]]:
    return [s.split("|") for s in text.split("\r") if s.startswith(name + "|")]


def _unescape(value: str) -> str:
    table = {"\\F\\": "|", "\\S\\": "^", "\\T\\": "&", "\\R\\": "~", "\\.br\\": "\n"}
    for escaped, plain in table.items():
        value = value.replace(escaped, plain)
    return value.replace("\\E\\", "\\")


def test_accession_is_the_filler_order_number_as_issued() -> None:
    study = sample_study("ich")
    _, plain = _oru(study, options=EncodeOptions(sending_application="AI-NODE"))
    for field in (_order(plain).orc.orc_3, _order(plain).obr.obr_3):
        assert field.ei_1.to_er7() == study.accession_number
        assert field.ei_2.to_er7() == "", "the node's name must not stamp the RIS's number"

    configured = EncodeOptions(order_filler_namespace="RIS")
    _, message = _oru(study, options=configured)
    assert _order(message).orc.orc_3.to_er7() == f"{study.accession_number}^RIS"

    # The accession's own issuer (IssuerOfAccessionNumberSequence) wins over configuration.
    _, message = _oru(study.model_copy(update={"accession_issuer": "RIS_EAST"}),
                      options=configured)
    assert _order(message).obr.obr_3.to_er7() == f"{study.accession_number}^RIS_EAST"


def test_placer_order_number_goes_to_orc2_and_obr2() -> None:
    study = sample_study("ich")
    _, message = _oru(study)
    assert _order(message).orc.orc_2.to_er7() == ""
    placed = study.model_copy(update={"placer_order_number": "PO-77|X",
                                      "placer_order_issuer": "EHR"})
    _, message = _oru(placed)
    for field in (_order(message).orc.orc_2, _order(message).obr.obr_2):
        assert field.to_er7() == "PO-77\\F\\X^EHR"


def test_pid3_carries_the_assigning_authority() -> None:
    study = sample_study("ich")
    _, message = _oru(study)
    cx = _pid(message).pid_3
    assert cx.cx_1.to_er7() == study.patient_id
    assert cx.cx_4.hd_1.to_er7() == "HOSPITAL"
    assert (cx.cx_4.hd_2.to_er7(), cx.cx_4.hd_3.to_er7()) == (SAMPLE_ISSUER_OID, "ISO")
    assert cx.cx_5.to_er7() == "MR"

    bare = study.model_copy(update={"patient_id_issuer": None,
                                    "patient_id_issuer_universal_id": None})
    _, message = _oru(bare, options=EncodeOptions(
        patient_id_authority="MAIN", patient_id_system="urn:oid:1.2.3.4.5"))
    cx = _pid(message).pid_3
    assert cx.cx_4.to_er7() == "MAIN&1.2.3.4.5&ISO"
    # An issuer longer than an HD namespace (IS, 20) is not cut: the configured one stands in.
    long_issuer = bare.model_copy(update={"patient_id_issuer": "X" * 40})
    _, message = _oru(long_issuer, options=EncodeOptions(patient_id_authority="MAIN"))
    assert _pid(message).pid_3.cx_4.to_er7() == "MAIN"


def test_msh_applications_facilities_and_character_set() -> None:
    options = EncodeOptions(sending_application="INFERNODE", sending_facility="RADIOLOGY",
                            receiving_application="EPIC", receiving_facility="MAIN_HOSP")
    text, message = _oru(sample_study("ich"), options=options)
    msh = message.msh
    assert [msh.msh_3.to_er7(), msh.msh_4.to_er7(), msh.msh_5.to_er7(),
            msh.msh_6.to_er7()] == ["INFERNODE", "RADIOLOGY", "EPIC", "MAIN_HOSP"]
    assert msh.msh_18.to_er7() == "UNICODE UTF-8"
    assert text.encode("utf-8").decode("utf-8") == text
    with pytest.raises(ValidationError):
        EncodeOptions(receiving_facility="F" * 21)  # HD.1 is IS, at most 20 characters


def test_every_name_group_is_a_pid5_repetition() -> None:
    text, message = _oru(sample_study("ich").model_copy(update={"patient_name": JAPANESE}))
    names = [(x.xpn_1.to_er7(), x.xpn_2.to_er7(), x.xpn_7.to_er7(), x.xpn_8.to_er7())
             for x in _pid(message).pid_5]
    assert names == [("Yamada", "Tarou", "L", "A"), ("山田", "太郎", "L", "I"),
                     ("やまだ", "たろう", "L", "P")]
    # Only the ideographic and phonetic groups, as some Japanese modalities send them.
    _, message = _oru(sample_study("ich").model_copy(update={"patient_name": "=山田^太郎"}))
    (only,) = _pid(message).pid_5
    assert (only.xpn_1.to_er7(), only.xpn_8.to_er7()) == ("山田", "I")
    assert "山田" in text


def test_study_instance_uid_travels_in_an_obx() -> None:
    study = sample_study("ich")
    _, message = _oru(study)
    observations = [g.obx for g in _order(message).oru_r01_observation]
    carrying = [o for o in observations if o.obx_3.ce_1.to_er7() == codes.STUDY_INSTANCE_UID[0]]
    assert len(carrying) == 1
    obx = carrying[0]
    assert obx.obx_3.to_er7() == "110180^Study Instance UID^DCM"
    assert obx.obx_5.to_er7() == study.study_instance_uid
    assert obx.obx_11.to_er7() == "P"


@pytest.mark.parametrize(
    ("study_update", "options", "obr7", "msh7"),
    [
        ({}, EncodeOptions(), "20240305143015+0000", "20240305150000+0000"),
        # TimezoneOffsetFromUTC wins over the site zone.
        ({"timezone_offset": timedelta(hours=9)}, EncodeOptions(timezone=ZoneInfo("Europe/Berlin")),
         "20240305143015+0900", "20240305160000+0100"),
        ({}, EncodeOptions(timezone=ZoneInfo("Europe/Berlin")),
         "20240305143015+0100", "20240305160000+0100"),
        ({"timezone_offset": timedelta(hours=-5, minutes=-30)}, EncodeOptions(),
         "20240305143015-0530", "20240305150000+0000"),
    ],
)
def test_local_times_carry_their_offset(
    study_update: dict[str, Any], options: EncodeOptions, obr7: str, msh7: str
) -> None:
    _, message = _oru(sample_study("ich").model_copy(update=study_update), options=options)
    order = _order(message)
    assert order.obr.obr_7.to_er7() == obr7
    assert message.msh.msh_7.to_er7() == msh7
    assert order.orc.orc_9.to_er7() == msh7
    observations = [g.obx for g in order.oru_r01_observation]
    assert {o.obx_14.to_er7() for o in observations} == {obr7}


def test_a_long_reason_is_split_into_ft_segments_without_uids_or_identifiers() -> None:
    study = sample_study("ich")
    sentence = (f"Série non analysée | ^~&\\ 頭部CT {study.study_instance_uid}.1 for "
                f"{study.patient_id} ")
    reason = "Not analysed: " + sentence * 20
    assert len(reason) > 1000
    text, message = _oru(study, conclusion=reason)
    conclusion = [s for s in _segments(text, "OBX") if s[2] == "FT"]
    assert len(conclusion) > 1
    assert all(len(s[5]) <= 199 for s in conclusion)
    assert {s[3] for s in conclusion} == {"19005-8^Radiology Imaging study [Impression] "
                                           "(narrative)^LN"}
    assert len({s[4] for s in conclusion}) == 1, "the pieces share one sub-id"
    joined = " ".join(_unescape(s[5]) for s in conclusion)
    assert "Série non analysée | ^~&\\ 頭部CT" in joined
    assert not UID_LIKE.search(joined)
    assert study.patient_id not in joined
    # The other OBX keep the finding values; the UID OBX still carries the UID.
    assert _order(message).obr.obr_25.to_er7() == "P"


def test_a_huge_text_is_capped_with_an_ellipsis() -> None:
    text, _ = _oru(sample_study("ich"), conclusion="word " * 40_000)
    pieces = [_unescape(s[5]) for s in _segments(text, "OBX") if s[2] == "FT"]
    assert pieces[-1].endswith(ELLIPSIS)
    assert sum(len(p) for p in pieces) <= MAX_TEXT_CHARS


def test_control_characters_and_line_breaks_in_text() -> None:
    text, _ = _oru(sample_study("ich"), conclusion="first\r\nsecond\x00\x07\tthird")
    (piece,) = [s[5] for s in _segments(text, "OBX") if s[2] == "FT"]
    assert piece == "first\\.br\\second third"


def test_long_identity_values_never_fail_validation() -> None:
    study = sample_study("ich").model_copy(update={
        "patient_id": "|" * 64,
        "patient_name": "^".join(["&" * 64] * 5) + "=" + "漢" * 64,
        "accession_number": "~" * 16,
        "placer_order_number": "\\" * 64,
    })
    text, message = _oru(study, conclusion="x")
    assert _pid(message).pid_3.cx_1.to_er7().startswith("\\F\\")
    assert text.count("\r") == len(text.split("\r")) - 1


def test_send_times_are_not_restamped() -> None:
    at = datetime(2024, 7, 1, 22, 30, tzinfo=UTC)
    text = build_oru(sample_study("ich"), (), sample_device(), fixed_clock(at), "C9",
                     options=EncodeOptions(timezone=ZoneInfo("Asia/Tokyo")))
    msh = _segments(text, "MSH")[0]
    assert msh[6] == "20240702073000+0900"  # the same instant, read in the site zone


def test_control_characters_in_values_cannot_break_the_frame() -> None:
    study = sample_study("ich").model_copy(update={
        "patient_name": "Doe\x1c^Jo\x0bhn", "patient_id": "P\r1", "accession_number": "A\x00"})
    text, message = _oru(study)
    assert not any(ch in text for ch in "\x00\x0b\x1c")
    assert len(text.split("\r")) == len(_segments(text, "OBX")) + 6  # MSH PID ORC OBR NTE ""
    pid = _pid(message)
    assert (pid.pid_5.xpn_1.to_er7(), pid.pid_5.xpn_2.to_er7()) == ("Doe", "John")
    assert pid.pid_3.cx_1.to_er7() == "P 1"
