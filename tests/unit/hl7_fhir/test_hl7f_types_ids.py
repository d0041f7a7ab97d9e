"""Input validation of hl7_fhir.types and the stable identities of hl7_fhir.fhir.ids."""

from __future__ import annotations

from datetime import date, time, timedelta, timezone

import pytest
from pydantic import ValidationError

from hl7_fhir.fhir import ids
from hl7_fhir.samples import sample_device, sample_findings, sample_study
from hl7_fhir.types import Coded, DeviceInfo, EncodeOptions, Finding, Preview, study_datetime

HEM = Coded(code="1386000", display="Intracranial hemorrhage")


@pytest.mark.parametrize("uid", ["1.2.03", "1..2", "1.2.", "a.b", "1." + "2" * 70])
def test_bad_uids_are_refused(uid: str) -> None:
    with pytest.raises(ValidationError):
        DeviceInfo(name="m", version="1", manufacturer="x", device_uid=uid)


def test_finding_needs_a_value_in_range() -> None:
    with pytest.raises(ValidationError, match="presence, a probability or a volume"):
        Finding(code=HEM)
    with pytest.raises(ValidationError):
        Finding(code=HEM, probability=1.5)
    with pytest.raises(ValidationError):
        Finding(code=HEM, volume_ml=-1.0)
    assert Finding(code=HEM, probability=0.0).probability == 0.0


def test_preview_must_match_its_content_type() -> None:
    with pytest.raises(ValidationError, match="not application/pdf"):
        Preview(content_type="application/pdf", data=b"\x89PNG\r\n\x1a\nxxxx")
    assert Preview(content_type="application/pdf", data=b"%PDF-1.7 ...").title


def test_identifier_systems_must_be_uris() -> None:
    with pytest.raises(ValidationError):
        EncodeOptions(patient_id_system="MRN")


def test_study_datetime_uses_the_configured_zone() -> None:
    study = sample_study().model_copy(
        update={"study_date": date(2024, 1, 2), "study_time": time(8)}
    )
    plus2 = timezone(timedelta(hours=2))
    assert study_datetime(study, plus2).isoformat() == "2024-01-02T08:00:00+02:00"  # type: ignore[union-attr]
    assert study_datetime(study, None).isoformat() == "2024-01-02T08:00:00+00:00"  # type: ignore[union-attr]
    no_time = study.model_copy(update={"study_time": None})
    assert study_datetime(no_time, plus2) == date(2024, 1, 2)


def test_identities_are_stable_and_depend_on_the_job_key() -> None:
    study, device = sample_study(), sample_device()
    assert ids.report_identity(study, device) == ids.report_identity(study, device)
    assert ids.report_identity(study, device) != ids.report_identity(study, sample_device("9"))
    other_study = sample_study(study_suffix="2")
    assert ids.report_identity(study, device) != ids.report_identity(other_study, device)


def test_observations_of_equal_findings_differ_but_tracking_uid_wins() -> None:
    study, device = sample_study("fracture"), sample_device()
    findings = sample_findings("fracture")
    first, second = ids.observation_identities(study, device, findings)
    assert first.value != second.value
    tracked = tuple(f.model_copy(update={"tracking_uid": "1.2.3.4"}) for f in findings[:1])
    reordered = (findings[1],) + tracked
    by_uid = ids.observation_identities(study, device, tracked)[0]
    assert ids.observation_identities(study, device, reordered)[1] == by_uid


def test_conditional_url_escapes_search_delimiters() -> None:
    ident = ids.Identity("Patient", "http://h.example/mrn", "A|B,C$D\\E", "urn:uuid:x")
    assert ident.conditional_url == (
        "Patient?identifier=http://h.example/mrn|A%5C|B%5C%2CC%5C%24D%5C%5CE"
    )
    assert ids.Identity("Patient", None, "P 1", "urn:uuid:x").conditional_url == (
        "Patient?identifier=P%201"
    )
