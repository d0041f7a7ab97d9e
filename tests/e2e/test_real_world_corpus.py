"""Every routed study gets a result or a delivered "not analysed" report: never silence, never a
dead letter caused by a header quirk.

The corpus (tests/e2e/real_world_corpus.py) holds head CTs with Type 2 attributes absent or
empty, malformed values, Japanese (ISO 2022 IR 87), Latin-1 and UTF-8 names, vendor private
blocks and a series without geometry, plus an MR diffusion and a radiograph study whose
pipelines have no model. DCMTK's storescu sends them to the node; the node delivers to a real
Orthanc PACS and its own FHIR facade. Checked for each study: one attempt, the expected outcome,
every delivery done, the SR in the PACS passes dciodvfy, its patient name bytes equal the
source's, the ORU parses strictly and the FHIR Bundle parses as R4.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message

from infernode.node import Node
from tests.e2e.e2e_support import (
    NodePlan,
    dciodvfy_errors,
    deliveries,
    download_series,
    job_result,
    jobs,
    node_settings,
    running_node,
    send_and_settle,
    study_series,
)
from tests.e2e.real_world_corpus import CASES, WrittenCase, write_corpus
from tests.support.net import free_port
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc

pytestmark = requires_orthanc

SENDER = "INFERNODE_SCU"
REPORTING = {"timezone": "Europe/Berlin", "sending_facility": "RADIOLOGY",
             "receiving_application": "EHR", "patient_id_system": "urn:oid:1.2.276.0.7230010.3"}
"""Site settings (the node's `reporting` section) that must reach every ORU and Bundle."""


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    corpus: list[WrittenCase]
    folder: Path
    logged: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("corpus")
    corpus = write_corpus(folder / "studies")
    handler = _Collect()
    logging.getLogger().addHandler(handler)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        with running_orthanc(folder / "orthanc") as pacs:
            plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                            senders=(SENDER,), quiet_period_s=3.0,
                            node={"dicom": {"assembly_poll_s": 0.1},
                                  "reporting": REPORTING})
            with running_node(node_settings(plan)) as node:
                send_and_settle(node, {c.study_instance_uid: c.files for c in corpus}, SENDER,
                                "every corpus study analysed or reported and delivered")
                yield Run(node, pacs, corpus, folder, "\n".join(handler.lines))
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(previous)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(str(record.exc_info[1]))


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_study_gets_its_outcome_in_one_attempt(run: Run, name: str) -> None:
    case = next(c for c in run.corpus if c.case.name == name)
    row = jobs(run.node)[case.study_instance_uid]
    assert row["pipeline"] == case.case.pipeline
    assert row["state"] != "dead_lettered", row["last_error"]
    assert row["attempts"] == 1, (row["state"], row["error_reason"], row["last_error"])
    assert row["outcome"] == case.case.outcome, (row["state"], row["last_error"])
    result = job_result(row)
    kinds = sorted(o["kind"] for o in result["outputs"])
    assert {"dicom", "fhir-bundle", "hl7-oru"} <= set(kinds)
    if case.case.outcome == "not_analysed":
        assert result["summary"]["not_analysed"]
        assert row["outcome_reason"]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_report_reaches_the_pacs_valid_and_with_the_source_identity(
        run: Run, name: str, tmp_path: Path) -> None:
    case = next(c for c in run.corpus if c.case.name == name)
    mine = [d for d in deliveries(run.node) if d["study_instance_uid"] == case.study_instance_uid]
    assert mine and all(d["state"] == "delivered" for d in mine), mine
    series = [s for s in study_series(run.pacs, case.study_instance_uid)
              if s["MainDicomTags"].get("Modality") == "SR"]
    assert len(series) == 1, "one AI report series in the original study"
    [path] = download_series(run.pacs, series[0], tmp_path / "sr")
    assert dciodvfy_errors(path) == []
    # get_item before any other access: the value as raw bytes, as the file holds it
    source = pydicom.dcmread(case.files[0], stop_before_pixels=True)
    report = pydicom.dcmread(path)
    for keyword in ("PatientName", "PatientID", "StudyDescription"):
        raw = source.get_item(keyword)
        if raw is not None and raw.value:
            held = report.get_item(keyword)
            assert held is not None, keyword
            # the bytes as the source wrote them, in the source's character set
            assert held.value == raw.value, keyword
    assert report.get("SpecificCharacterSet") == source.get("SpecificCharacterSet")
    assert report.StudyInstanceUID == case.study_instance_uid


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_study_has_a_strict_oru_and_an_r4_bundle(run: Run, name: str) -> None:
    case = next(c for c in run.corpus if c.case.name == name)
    result = job_result(jobs(run.node)[case.study_instance_uid])
    by_kind = {o["kind"]: Path(o["path"]) for o in result["outputs"] if o["kind"] != "dicom"}
    message = parse_message(by_kind["hl7-oru"].read_text(encoding="utf-8").replace("\n", "\r"),
                            validation_level=1)
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_4.to_er7() == REPORTING["sending_facility"]
    assert message.msh.msh_5.to_er7() == REPORTING["receiving_application"]
    assert message.msh.msh_18.to_er7() == "UNICODE UTF-8"
    source = pydicom.dcmread(case.files[0], stop_before_pixels=True)
    oru = by_kind["hl7-oru"].read_text(encoding="utf-8")
    for group in str(source.get("PatientName", "") or "").split("="):
        # every name group (alphabetic, ideographic, phonetic) reaches PID-5
        assert all(part in oru for part in group.split("^") if part), group
    if str(source.get("StudyDate", "")) == "20260101" and source.get("StudyTime") == "120000":
        # local study time in the site zone (Berlin in January: UTC+1), never stamped as UTC
        [obr] = [seg for seg in oru.replace("\n", "\r").split("\r") if seg.startswith("OBR|")]
        assert obr.split("|")[7] == "20260101120000+0100"
    bundle = Bundle.model_validate_json(by_kind["fhir-bundle"].read_text(encoding="utf-8"))
    report = next(e.resource for e in bundle.entry
                  if e.resource.__resource_type__ == "DiagnosticReport")
    assert report.status == "preliminary"
    if source.get("PatientID"):
        # the EHR's patient, by the configured identifier system (inside the Bundle: the
        # conditional create's identifier; else the logical reference's)
        identifier = report.subject.identifier
        if identifier is None:
            patient = next(e for e in bundle.entry if e.fullUrl == report.subject.reference)
            assert patient.request.ifNoneExist == (
                f"identifier={REPORTING['patient_id_system']}|{source.PatientID}")
            [identifier] = patient.resource.identifier
        assert (identifier.system, identifier.value) == (REPORTING["patient_id_system"],
                                                         source.PatientID)
    if case.case.outcome == "not_analysed":
        assert "Not analysed" in (report.conclusion or "")


def test_nothing_logged_names_a_patient(run: Run) -> None:
    assert run.logged
    for case in run.corpus:
        source = pydicom.dcmread(case.files[0], stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "AccessionNumber"):
            value = str(source.get(keyword, "") or "")
            for part in filter(None, value.replace("=", "^").split("^")):
                if len(part) > 2:
                    assert part not in run.logged, (case.case.name, keyword)
