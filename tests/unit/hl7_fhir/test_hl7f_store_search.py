"""put_bundle and the searches of the facade store, on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hl7_fhir.facade.search import SearchError, search
from hl7_fhir.facade.store import (
    fhir_resource_tokens,
    fhir_resources,
    get_resource,
    metadata,
    put_bundle,
)
from hl7_fhir.fhir import build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from hl7_fhir.types import EncodeOptions

MRN = "http://hospital.example.org/mrn"
OPTS = EncodeOptions(patient_id_systems={"HOSPITAL": MRN})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'fhir.db'}")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def _store(engine: Engine, kind: str, suffix: str = "1", **kw: object) -> list[str]:
    bundle = build_report_bundle(
        sample_study(kind, study_suffix=suffix), sample_findings(kind), sample_device(),
        "conclusion", fixed_clock(), options=OPTS, **kw,  # type: ignore[arg-type]
    )
    return put_bundle(engine, bundle, now=datetime(2024, 3, 5, 16, tzinfo=UTC))


def _ids(engine: Engine, rtype: str, *params: tuple[str, str]) -> set[str]:
    return {r["id"] for r in search(engine, rtype, list(params)).resources}


def test_put_bundle_rewrites_references_to_stored_ids(engine: Engine) -> None:
    stored = _store(engine, "ich")
    types = [ref.split("/")[0] for ref in stored]
    assert types == ["Patient", "ImagingStudy", "Device", "Observation", "Observation",
                     "DiagnosticReport"]
    report_type, report_id = stored[-1].split("/")
    report = get_resource(engine, report_type, report_id)
    assert report is not None
    assert report["subject"]["reference"] == stored[0]
    assert report["imagingStudy"][0]["reference"] == stored[1]
    assert [r["reference"] for r in report["result"]] == stored[3:5]
    assert report["meta"]["versionId"] == "1"
    for ref in stored:
        rtype, rid = ref.split("/")
        assert get_resource(engine, rtype, rid) is not None


def test_rerun_updates_in_place_and_keeps_the_patient(engine: Engine) -> None:
    first = _store(engine, "ich")
    again = _store(engine, "ich")
    assert first == again
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(fhir_resources)) == 6
    rtype, rid = again[-1].split("/")
    assert get_resource(engine, rtype, rid)["meta"]["versionId"] == "2"  # type: ignore[index]
    # The Patient was a conditional create: matched, not rewritten.
    assert get_resource(engine, "Patient", first[0].split("/")[1])["meta"]["versionId"] == "1"  # type: ignore[index]


def test_conditional_update_finds_a_resource_stored_under_another_id(engine: Engine) -> None:
    stored = _store(engine, "stroke")
    device_id = stored[2].split("/")[1]
    # as if another writer had stored the Device under an id of its own choosing
    tokens = fhir_resource_tokens
    with engine.begin() as conn:
        conn.execute(sa.update(tokens).where(tokens.c.resource_id == device_id)
                     .values(resource_id="server-chosen"))
        conn.execute(sa.update(fhir_resources).where(fhir_resources.c.id == device_id)
                     .values(id="server-chosen"))
    again = _store(engine, "stroke")
    assert again[2] == "Device/server-chosen"
    obs = get_resource(engine, "Observation", again[3].split("/")[1])
    assert obs is not None and obs["device"]["reference"] == "Device/server-chosen"


def test_searches(engine: Engine) -> None:
    ich = _store(engine, "ich", "1")
    stroke = _store(engine, "stroke", "2")
    ich_report, stroke_report = ich[-1].split("/")[1], stroke[-1].split("/")[1]
    patient = ich[0]
    assert _ids(engine, "DiagnosticReport", ("patient", patient)) == {ich_report}
    assert _ids(engine, "DiagnosticReport", ("patient", patient.split("/")[1])) == {ich_report}
    assert _ids(engine, "DiagnosticReport", ("subject", f"http://x/fhir/{patient}")) == {ich_report}
    assert _ids(engine, "DiagnosticReport", ("identifier", "ACC20042")) == {stroke_report}
    assert _ids(engine, "ImagingStudy", ("identifier", "ACC20042")) == {stroke[1].split("/")[1]}
    study_uid = sample_study("stroke", study_suffix="2").study_instance_uid
    assert _ids(engine, "ImagingStudy", ("identifier", f"urn:dicom:uid|urn:oid:{study_uid}")) \
        == {stroke[1].split("/")[1]}
    both = {ich_report, stroke_report}
    assert _ids(engine, "DiagnosticReport", ("category", "http://loinc.org|LP29684-5")) == both
    assert _ids(engine, "DiagnosticReport", ("category", "RAD")) == both
    assert _ids(engine, "DiagnosticReport", ("category", "http://loinc.org|RAD")) == set()
    assert _ids(engine, "DiagnosticReport", ("category", "|RAD")) == set()
    assert _ids(engine, "DiagnosticReport", ("code", "30657-1,30799-1")) == both
    assert _ids(engine, "DiagnosticReport", ("status", "preliminary")) == both
    assert _ids(engine, "DiagnosticReport", ("status", "final")) == set()
    assert len(_ids(engine, "Observation", ("patient", patient), ("category", "imaging"))) == 2
    assert _ids(engine, "Observation", ("code", "http://snomed.info/sct|432504007")) \
        == {stroke[3].split("/")[1]}


@pytest.mark.parametrize(
    ("params", "hit"),
    [
        ([("date", "2024-03-05")], True),
        ([("date", "2024-03")], True),
        ([("date", "2024-03-06")], False),
        ([("date", "ge2024-03-05T14:30:15Z")], True),
        ([("date", "ge2024-03-05T14:30:16Z")], False),
        ([("date", "le2024-03-05T14:30:15Z")], True),
        ([("date", "le2024-03-05T14:30:14Z")], False),
        ([("date", "gt2024-03-04"), ("date", "lt2024-03-06")], True),
        ([("date", "gt2024-03-05")], False),
        ([("date", "ge2024-03-05T15:30:15+01:00"), ("date", "le2024-03-05T15:30:15+01:00")], True),
    ],
)
def test_date_prefixes(engine: Engine, params: list[tuple[str, str]], hit: bool) -> None:
    # the sample study is 2024-03-05T14:30:15Z
    stored = _store(engine, "ich")
    found = _ids(engine, "DiagnosticReport", ("category", "LP29684-5"), *params)
    assert found == ({stored[-1].split("/")[1]} if hit else set())


def test_paging_and_refusals(engine: Engine) -> None:
    for suffix in "123":
        _store(engine, "ich", suffix)
    page = search(engine, "DiagnosticReport", [("_count", "2")])
    assert (page.total, len(page.resources)) == (3, 2)
    rest = search(engine, "DiagnosticReport", [("_count", "2"), ("_offset", "2")])
    assert len(rest.resources) == 1
    assert {r["id"] for r in page.resources + rest.resources} == _ids(engine, "DiagnosticReport")
    for bad in ([("foo", "1")], [("patient:identifier", "x")], [("date", "ne2024")],
                [("_count", "-1")], [("status", "")]):
        with pytest.raises(SearchError):
            search(engine, "DiagnosticReport", bad)
    with pytest.raises(SearchError):
        search(engine, "Encounter", [])


def test_put_bundle_refuses_bad_input(engine: Engine) -> None:
    with pytest.raises(ValueError, match="transaction"):
        put_bundle(engine, {"resourceType": "Bundle", "type": "searchset"})
    encounter = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Encounter", "id": "e1"}}]}
    with pytest.raises(ValueError, match="does not store Encounter"):
        put_bundle(engine, encounter)
    invalid = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Device", "id": "d1", "status": 5, "secretName": "Doe"}}]}
    with pytest.raises(ValueError) as info:
        put_bundle(engine, invalid)
    assert "Doe" not in str(info.value)
    assert json.dumps(invalid)  # unchanged input


def test_escaped_identifiers_match_on_rerun(engine: Engine) -> None:
    study = sample_study("ich").model_copy(update={"patient_id": "A|B,C$D\\E"})
    for _ in range(2):
        put_bundle(engine, build_report_bundle(
            study, (), sample_device(), "x", fixed_clock(), options=OPTS))
    with engine.connect() as conn:
        patients = conn.scalar(sa.select(sa.func.count()).select_from(fhir_resources)
                               .where(fhir_resources.c.resource_type == "Patient"))
    assert patients == 1
    assert len(_ids(engine, "Patient", ("identifier", f"{MRN}|A\\|B\\,C\\$D\\\\E"))) == 1
