"""ORU^R01 against hl7apy's strict HL7 v2.5.1 parser and the fields STANDARDS.md requires."""

from __future__ import annotations

from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from hl7_fhir import codes
from hl7_fhir.hl7v2 import build_oru, validate_strict
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from hl7_fhir.types import EncodeOptions

KINDS = ("ich", "stroke", "fracture")


def _parse(text: str) -> Any:
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    return message


def _order(message: Any) -> Any:
    return message.oru_r01_patient_result.oru_r01_order_observation


@pytest.mark.parametrize("kind", KINDS)
def test_oru_parses_strictly_with_required_fields(kind: str) -> None:
    study = sample_study(kind)
    findings = sample_findings(kind)
    text = build_oru(
        study, findings, sample_device(), fixed_clock(), f"CTL-{kind}",
        conclusion="Line one\nline two", options=EncodeOptions(receiving_application="EHR"),
    )
    assert text.endswith("\r") and "\n" not in text
    message = _parse(text)
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_10.to_er7() == f"CTL-{kind}"
    assert message.msh.msh_12.to_er7() == "2.5.1"
    assert message.msh.msh_7.to_er7() == "20240305150000+0000"
    pid = message.oru_r01_patient_result.oru_r01_patient.pid
    assert pid.pid_3.cx_1.to_er7() == study.patient_id
    order = _order(message)
    assert order.orc.orc_1.to_er7() == "RE"
    assert order.obr.obr_18.to_er7() == study.accession_number
    assert order.obr.obr_25.to_er7() == "P"
    procedure = study.procedure_code
    assert order.obr.obr_4.to_er7() == f"{procedure.code}^{procedure.display}^LN"

    observations = [g.obx for g in order.oru_r01_observation]
    assert all(obx.obx_11.to_er7() == "P" for obx in observations)
    assert [int(obx.obx_1.to_er7()) for obx in observations] == list(
        range(1, len(observations) + 1)
    )
    for index, finding in enumerate(findings, start=1):
        mine = [o for o in observations if o.obx_4.to_er7() == str(index)]
        main = [o for o in mine if o.obx_3.ce_1.to_er7() == finding.code.code]
        assert len(main) == 1, "exactly one OBX names each finding"
        assert main[0].obx_3.ce_3.to_er7() == "SCT"
        if finding.presence is not None:
            assert main[0].obx_5.to_er7().startswith("52101004^Present^SCT")
            assert main[0].obx_8.to_er7() == ("AA" if finding.critical else "A")
        values = {o.obx_3.ce_1.to_er7(): o.obx_5.to_er7() for o in mine}
        if finding.probability is not None and finding.presence is not None:
            assert float(values[codes.PROBABILITY[0]]) == pytest.approx(finding.probability)
        if finding.volume_ml is not None:
            assert float(values["118565006"]) == pytest.approx(finding.volume_ml)
            assert next(o for o in mine if o.obx_3.ce_1.to_er7() == "118565006").obx_6.to_er7() \
                == "mL^mL^UCUM"
    conclusion = observations[-1]
    assert conclusion.obx_2.to_er7() == "FT"
    # hl7apy does not know FT formatting escapes and re-escapes them, so read the wire text.
    last_obx = [s for s in text.split("\r") if s.startswith("OBX|")][-1]
    assert last_obx.split("|")[5] == "Line one\\.br\\line two"


def test_delimiters_in_values_are_escaped_and_survive_parsing() -> None:
    study = sample_study("ich").model_copy(
        update={
            "accession_number": "A|1^2&3~4\\5",
            "patient_name": "O'Brien|X^Anne",
            "patient_id": "ID^7",
        }
    )
    text = build_oru(study, sample_findings("ich"), sample_device(), fixed_clock(), "C1")
    message = _parse(text)
    order = _order(message)
    assert order.obr.obr_18.to_er7() == "A\\F\\1\\S\\2\\T\\3\\R\\4\\E\\5"
    # Every segment keeps its field count: no delimiter leaked from a value.
    obr = next(s for s in text.split("\r") if s.startswith("OBR|"))
    assert len(obr.split("|")) == 26
    pid = message.oru_r01_patient_result.oru_r01_patient.pid
    assert pid.pid_5.xpn_1.to_er7() == "O'Brien\\F\\X"
    assert pid.pid_3.cx_1.to_er7() == "ID\\S\\7"


def test_study_without_name_accession_or_findings_still_parses() -> None:
    study = sample_study("ich").model_copy(
        update={"patient_name": None, "accession_number": None, "study_time": None}
    )
    text = build_oru(study, (), sample_device(), fixed_clock(), "C2", conclusion="Negative.")
    message = _parse(text)
    order = _order(message)
    assert message.oru_r01_patient_result.oru_r01_patient.pid.pid_5.to_er7() == "^^^^^^U"
    assert order.obr.obr_18.to_er7() == ""
    assert order.obr.obr_3.to_er7(), "a filler order number stands in for the accession"
    assert order.obr.obr_7.to_er7() == "20240305"


def test_validator_rejects_a_broken_message() -> None:
    good = build_oru(sample_study(), sample_findings(), sample_device(), fixed_clock(), "C3")
    broken = good.replace("|P|||", "||||", 1)  # drop OBX-11 of the first OBX
    assert broken != good
    with pytest.raises(ValueError, match="strict"):
        validate_strict(broken)


def test_control_id_is_required() -> None:
    with pytest.raises(ValueError):
        build_oru(sample_study(), (), sample_device(), fixed_clock(), "")
