"""The whole node with Orthanc as both sender and PACS.

Orthanc holds the two sample head CTs (a subdural haemorrhage phantom and a normal one) and
C-STOREs them to the node. The node completes the studies, runs the ICH demo model and
delivers: SR and KOS (and SEG when the model segments) back into the same study in Orthanc, the
report Bundle to a loopback EHR FHIR endpoint and to its own token-locked facade, and one
priority signal per critical study to a webhook. One run serves every test of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from infernode.node import Node
from infernode.samples import SAMPLES, write_sample_studies
from infernode.sender import dicom_files
from tests.e2e.e2e_support import (
    EHR_TOKEN,
    Facade,
    HttpPeer,
    NodePlan,
    all_delivered,
    dciodvfy_errors,
    deliveries,
    download_series,
    http_peer,
    node_settings,
    running_node,
    study_series,
    wait_until,
)
from tests.support.net import free_port
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc

pytestmark = requires_orthanc

CRITICAL_FLAG = "critical: ICH suspected"


@dataclass(frozen=True)
class Sample:
    study_instance_uid: str
    accession_number: str
    patient_id: str
    critical: bool


@dataclass(frozen=True)
class Roundtrip:
    node: Node
    pacs: OrthancServer
    ehr: HttpPeer
    pager: HttpPeer
    facade: Facade
    positive: Sample
    negative: Sample
    folder: Path


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roundtrip]:
    folder = tmp_path_factory.mktemp("roundtrip")
    identities = write_sample_studies(folder / "samples", with_mr=False)
    subtypes = dict(SAMPLES)
    samples = [Sample(i.study_instance_uid, i.accession_number, i.patient_id,
                      critical=bool(subtypes[label])) for i, label in identities]
    [positive] = [s for s in samples if s.critical]
    [negative] = [s for s in samples if not s.critical]
    with http_peer() as ehr, http_peer() as pager, \
            running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        fhir_url=f"{ehr.url}/fhir", webhook_url=f"{pager.url}/hooks/ai",
                        node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            pacs.add_modality("INFERNODE", node.settings.dicom.ae_title, "127.0.0.1",
                              node.server.port)
            studies = pacs.upload(dicom_files(folder / "samples"))
            pacs.send_to_modality("INFERNODE", sorted(studies))
            wanted = {positive.study_instance_uid, negative.study_instance_uid}
            wait_until(lambda: all_delivered(node, wanted), 90,
                       "both studies analysed and every result delivered")
            yield Roundtrip(node, pacs, ehr, pager, Facade(plan.web_port), positive, negative,
                            folder)


def _results_in_pacs(rt: Roundtrip, sample: Sample) -> dict[str, list[Path]]:
    """Modality -> files of each series Orthanc holds in the sample's study."""
    found: dict[str, list[Path]] = {}
    for series in study_series(rt.pacs, sample.study_instance_uid):
        modality = series["MainDicomTags"]["Modality"]
        folder = rt.folder / "readback" / sample.accession_number / series["ID"]
        found.setdefault(modality, []).extend(download_series(rt.pacs, series, folder))
    return found


@pytest.mark.parametrize("which", ["positive", "negative"])
def test_results_join_the_source_study_in_the_pacs_and_validate(roundtrip: Roundtrip,
                                                                which: str) -> None:
    sample: Sample = getattr(roundtrip, which)
    found = _results_in_pacs(roundtrip, sample)
    # the CT Orthanc sent and the results came back into ONE Orthanc study (same patient id
    # and Study Instance UID: Orthanc keys its study on both)
    assert "CT" in found and "SR" in found, sorted(found)
    assert ("KO" in found) is sample.critical, sorted(found)
    # the overlay series (OT) and the GSPS (PR) come with a positive result only
    assert set(found) <= {"CT", "SR", "KO", "SEG", "OT", "PR"}, sorted(found)
    assert ("PR" in found) is sample.critical, sorted(found)
    assert len(found["SR"]) == 1
    for modality in sorted(set(found) - {"CT"}):
        for path in found[modality]:
            errors = dciodvfy_errors(path)
            assert errors == [], (modality, errors)
            ds = pydicom.dcmread(path)
            assert ds.StudyInstanceUID == sample.study_instance_uid
            assert ds.PatientID == sample.patient_id
            assert ds.AccessionNumber == sample.accession_number
            assert "AI" in str(ds.SeriesDescription)
    sr = pydicom.dcmread(found["SR"][0])
    assert sr.VerificationFlag == "UNVERIFIED"
    # what reached the PACS is exactly what the node recorded as delivered there
    delivered = {r["uid"] for r in deliveries(roundtrip.node)
                 if r["destination"] == "pacs"
                 and r["study_instance_uid"] == sample.study_instance_uid}
    stored = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
              for m in found if m != "CT" for p in found[m]}
    assert stored == delivered


def _posted_report(rt: Roundtrip, sample: Sample) -> dict[str, Any]:
    """The DiagnosticReport of the Bundle the EHR endpoint received for the sample's study."""
    reports = []
    for request in rt.ehr.posts():
        bundle = request.json()
        resources = [e["resource"] for e in bundle["entry"]]
        imaging = [r for r in resources if r["resourceType"] == "ImagingStudy"]
        uids = {i["value"] for r in imaging for i in r["identifier"]}
        if f"urn:oid:{sample.study_instance_uid}" in uids:
            reports += [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    assert len(reports) == 1, f"{len(reports)} reports posted for the study"
    return reports[0]


@pytest.mark.parametrize("which", ["positive", "negative"])
def test_report_reaches_the_ehr_and_the_facade_serves_it(roundtrip: Roundtrip,
                                                        which: str) -> None:
    sample: Sample = getattr(roundtrip, which)
    posts = roundtrip.ehr.posts()
    assert all(p.path == "/fhir" for p in posts), [p.path for p in posts]
    assert all(p.headers.get("Authorization") == f"Bearer {EHR_TOKEN}" for p in posts)
    assert all(p.json()["type"] == "transaction" for p in posts)
    posted = _posted_report(roundtrip, sample)
    assert posted["status"] == "preliminary"
    assert ("haemorrhage:" in posted["conclusion"]) is sample.critical, posted["conclusion"]

    facade = roundtrip.facade
    [imaging] = facade.resources("ImagingStudy",
                                 identifier=f"urn:oid:{sample.study_instance_uid}")
    accessions = {i["value"] for i in imaging["identifier"]}
    assert sample.accession_number in accessions
    # the report's own identifier first, then the accession (type ACSN)
    ident, accession = posted["identifier"]
    assert accession["value"] == sample.accession_number
    [served] = facade.resources("DiagnosticReport",
                                identifier=f"{ident['system']}|{ident['value']}")
    assert served["conclusion"] == posted["conclusion"]
    assert served["status"] == "preliminary"
    assert served["imagingStudy"] == [{"reference": f"ImagingStudy/{imaging['id']}"}]


def test_facade_finds_the_report_by_accession(roundtrip: Roundtrip) -> None:
    found = roundtrip.facade.resources("DiagnosticReport",
                                       identifier=roundtrip.positive.accession_number)
    assert len(found) == 1
    assert found[0]["status"] == "preliminary"


def test_only_the_critical_study_fires_one_priority_signal(roundtrip: Roundtrip) -> None:
    signals = [p.json() for p in roundtrip.pager.posts("/hooks/ai")]
    assert len(roundtrip.pager.seen) == len(signals) == 1, signals
    [signal] = signals
    assert signal["event"] == "priority-signal"
    assert signal["study_instance_uid"] == roundtrip.positive.study_instance_uid
    assert signal["flag"] == CRITICAL_FLAG
    assert signal["pipeline"] == "ich" and signal["priority"] == "stat"
    # the signal names the study by UID only: no patient data
    body = roundtrip.pager.seen[0].body.decode()
    assert roundtrip.positive.patient_id not in body
    assert roundtrip.positive.accession_number not in body
