"""Labelling final reports: coded findings first, then keywords with negation, then normal
phrases; unlabelled when no rule decides. FHIR DiagnosticReports read the same way."""

from __future__ import annotations

import base64

import pytest

from hl7_fhir.hl7v2.listener import MessageRejected, parse_oru
from hl7_fhir.labels import FinalReport, LabelRules, final_report_from_fhir, label_report

ICH = LabelRules(positive_codes=["http://snomed.info/sct|1386000"],
                 negative_codes=["http://snomed.info/sct|281900007"],
                 keywords=["haemorrhage", "hemorrhage", "subdural", "bleed"])


def _report(text: str, codes: tuple[tuple[str, str], ...] = ()) -> FinalReport:
    return FinalReport(source="hl7", report_id="r", accession="A", text=text, codes=codes)


@pytest.mark.parametrize(("text", "expected"), [
    ("Acute subdural haematoma and subdural haemorrhage.", True),
    ("No evidence of haemorrhage.", False),
    ("CT head without hemorrhage.", False),
    ("Negative for intracranial hemorrhage.", False),
    ("No mass effect. Small subdural bleed.", True),  # the negation ends with its sentence
    ("No midline shift but a subdural haemorrhage.", True),  # a pivot ends the negation
    ("Haemorrhage has been ruled out.", False),  # a cue after the keyword
    ("Subdural haemorrhage is not seen on this study.", False),
    ("Haemorrhage, although not large.", True),  # a pivot keeps a later cue away
    ("No acute intracranial abnormality.", False),  # normal phrase
    ("Chronic small vessel disease.", None),  # nothing decides
])
def test_keywords_with_negation(text: str, expected: bool | None) -> None:
    assert label_report(_report(text), ICH).positive is expected


def test_codes_come_before_words() -> None:
    coded = _report("No haemorrhage.", (("http://snomed.info/sct", "1386000"),))
    assert label_report(coded, ICH).positive is True
    assert label_report(coded, ICH).rule.startswith("code")
    negative = _report("Subdural haemorrhage.", (("http://snomed.info/sct", "281900007"),))
    assert label_report(negative, ICH).positive is False
    other_system = _report("", (("http://loinc.org", "1386000"),))
    assert label_report(other_system, ICH).positive is None


def test_oru_parsing_reads_accession_text_codes_and_escapes() -> None:
    text = ("MSH|^~\\&|RIS|H|NODE|H|20261110101500||ORU^R01|C1|P|2.5.1\r"
            "OBR|1|P1|ACC9|CTHEAD^CT head^L|||||||||||||||||||20261110101000|||F\r"
            "OBX|1|FT|59776-5^Findings^LN||Line one\\.br\\No bleed \\T\\ no mass||||||F\r"
            "OBX|2|CWE|59776-5^Findings^LN||1386000^ICH^SCT||||||F\r")
    report = parse_oru(text)
    assert report.accession == "ACC9"
    assert report.text == "Line one\nNo bleed & no mass"
    assert report.codes == (("http://snomed.info/sct", "1386000"),)
    assert report.status == "F"
    with pytest.raises(MessageRejected) as err:
        parse_oru(text.replace("OBR|1|P1|ACC9|", "OBR|1|P1||"))
    assert err.value.code == "101"


def test_fhir_final_report() -> None:
    resource = {
        "resourceType": "DiagnosticReport", "id": "dr1", "status": "final",
        "identifier": [{"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
            "value": "ACC7"}],
        "conclusion": "Small subdural haemorrhage.",
        "presentedForm": [{"contentType": "text/plain",
                           "data": base64.b64encode(b"Full text.").decode()}],
        "issued": "2026-11-10T10:00:00Z",
    }
    report = final_report_from_fhir(resource)
    assert report is not None and report.accession == "ACC7" and report.source == "fhir"
    assert "Full text." in report.text
    assert label_report(report, ICH).positive is True
    assert final_report_from_fhir({**resource, "status": "preliminary"}) is None
    assert final_report_from_fhir({**resource, "identifier": []}) is None
