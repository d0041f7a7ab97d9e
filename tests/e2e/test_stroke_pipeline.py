"""MR stroke studies through the real SCP (DCMTK storescu) to the stroke pipeline (the
ADC-threshold core, the default model) and into a real Orthanc PACS.

Cases (tests/e2e/stroke_studies.py): b-values where Siemens, GE and Philips keep them and in
Image Comments; the scanner's ADC on the DWI grid, on a coarser grid (resampled by patient
coordinates) and in another Frame of Reference (registered rigidly, reported in the job); no
ADC, with the b=0 images in the DWI series or in a series of their own (the ADC computed); a
normal brain. Checked: each study completed once (one job, no amendment), one attempt and the
expected roles; the job's SEG, SR and KOS in the original study in Orthanc, valid for dciodvfy,
PixelMed and dcentvfy (source, SEG and SR together); the SR's core volume equal to what the
model measures on the phantom's own arrays (on the acquisition grid) and within 5% of the
phantom truth everywhere; lesion count and side; FHIR and HL7 delivered with the volume; the
priority signal raised by a core of 1 mL or more.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from hl7apy.parser import parse_message
from scipy import ndimage

from infernode.node import Node
from tests.e2e.e2e_support import (
    REPO,
    NodePlan,
    content_items,
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
from tests.e2e.stroke_studies import CASES, SHIFT_MM, WrittenStroke, write_stroke_study
from tests.support.net import free_port
from tests.support.peers import pixelmed
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc
from tests.support.peers.pixelmed_allowlist import unexplained
from workers.db import jobs as job_table
from workers.pipelines.stroke import STROKE

pytestmark = requires_orthanc

SENDER = "MR_SCANNER"
QUIET_PERIOD_S = float(STROKE.rule["quiet_period_s"])
"""How long a series may go without an instance before the node takes it as complete: the
stroke rule's own (20 s). The studies are sent one after the other while the node (in this
process) analyses the ones before; on a loaded two-core machine that has held up the receipt of
a study's next instance for up to 4.4 s, and with the 1 s used before, a study was analysed in
part (not analysed, its SR without a volume) and again as an amendment when the rest came in.
The price is the wait for the last study's series to complete."""


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    studies: list[WrittenStroke]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("stroke")
    studies = [write_stroke_study(folder / "studies", case, i)
               for i, case in enumerate(CASES, start=1)]
    with running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        senders=(SENDER,), quiet_period_s=QUIET_PERIOD_S,
                        node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            send_and_settle(node, {s.study_instance_uid: s.files for s in studies}, SENDER,
                            "every stroke study analysed and delivered")
            yield Run(node, pacs, studies)


def _case(run: Run, name: str) -> WrittenStroke:
    return next(s for s in run.studies if s.case.name == name)



@functools.cache
def _model() -> Any:
    from inference.registry import ModelRegistry

    return ModelRegistry([REPO / "models"], device="cpu", warmup=False).get(
        "stroke-adc-threshold")


def _direct_ml(study: WrittenStroke) -> float:
    """The core volume the default stroke model measures on the phantom's arrays directly."""
    channels = ("dwi", "adc") if study.case.adc != "none" else ("dwi", "b0")
    prediction = _model().predict_input(study.phantom.study_input(channels), b_value=1000.0)
    return float(prediction.masks[0].volume_ml)


def _number(item: Any) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _lesion_volumes_sr(sr: Any) -> list[float]:
    """The volumes of the SR's per-lesion groups (TID 1501 groups whose Tracking Identifier
    ends "lesion N"), smallest first."""
    volumes = []
    for group in content_items(sr, "125007"):
        [tracking] = [i.TextValue for i in content_items(group, "112039")][:1] or [""]
        if re.search(r" lesion \d+$", str(tracking)):
            [volume] = [v for v in content_items(group, "118565006") if v.ValueType == "NUM"]
            volumes.append(_number(volume))
    return sorted(volumes)


def _lesion_volumes_truth(study: WrittenStroke) -> list[float]:
    """The phantom's lesions (connected components of its truth mask) in mL, smallest first."""
    labels, count = ndimage.label(study.phantom.truth)
    voxel_ml = float(np.prod(study.phantom.dwi.spacing)) / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return sorted(float(n) * voxel_ml for n in sizes)


def _study_jobs(node: Node, study_instance_uid: str) -> list[dict[str, Any]]:
    """Every job row of a study, by amendment (`jobs` keeps one row per study)."""
    with node.engine.connect() as conn:
        rows = conn.execute(sa.select(job_table).where(
            job_table.c.study_instance_uid == study_instance_uid).order_by(
            job_table.c.amendment)).mappings()
        return [dict(r) for r in rows]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_study_gets_a_result_in_one_attempt(run: Run, name: str) -> None:
    study = _case(run, name)
    # one completion, one job: a study completed in part (a pause in its receipt longer than
    # the quiet period) is analysed twice, and the PACS holds both jobs' reports
    every = _study_jobs(run.node, study.study_instance_uid)
    assert [r["amendment"] for r in every] == [0], [
        (r["amendment"], r["state"], r["outcome_reason"]) for r in every]
    row = jobs(run.node)[study.study_instance_uid]
    assert (row["pipeline"], row["state"], row["attempts"], row["outcome"]) == (
        "stroke", "succeeded", 1, "result"), row["last_error"]
    selection = json.loads(job_result(row)["summary"]["selection"])
    roles = sorted(c["role"] for c in selection["chosen"])
    assert roles == (["b0", "dwi"] if study.case.adc == "none" else ["adc", "dwi"])
    assert all(d["state"] == "delivered" for d in deliveries(run.node)
               if d["study_instance_uid"] == study.study_instance_uid)
    summary = job_result(row)["summary"]
    if study.case.adc == "other-frame":
        # the registration is reported in the job: it found the ADC's shift
        assert summary["adc_registration_translation_mm"] == pytest.approx(
            float(np.linalg.norm(SHIFT_MM)), abs=1.0)
    else:
        assert not any(key.endswith("registration_translation_mm") for key in summary)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_results_in_the_pacs_are_valid_and_measure_the_core(
        run: Run, name: str, tmp_path: Path) -> None:
    study = _case(run, name)
    row = jobs(run.node)[study.study_instance_uid]
    written = {o["uid"]: Path(o["path"]) for o in job_result(row)["outputs"]
               if o["kind"] == "dicom"}
    by_modality: dict[str, Path] = {}
    for series in study_series(run.pacs, study.study_instance_uid):
        modality = series["MainDicomTags"].get("Modality")
        if modality in ("SEG", "SR", "KO"):
            [path] = download_series(run.pacs, series, tmp_path / modality)
            # what the job wrote, not another job's object under the same UID (output UIDs
            # follow study, pipeline and model version; a PACS keeps the first copy)
            stored = pydicom.dcmread(path)
            uid = str(stored.SOPInstanceUID)
            assert uid in written, (modality, "not written by the study's job")
            assert stored == pydicom.dcmread(written[uid]), (
                modality, "the PACS holds other content under the job's UID")
            by_modality[modality] = path
    positive = bool(study.case.lesions)
    assert sorted(by_modality) == (["KO", "SEG", "SR"] if positive else ["SR"])
    for path in by_modality.values():
        assert dciodvfy_errors(path) == [], path
    for modality, path in by_modality.items():
        validator = pixelmed.SR_VALIDATOR if modality in ("SR", "KO") else (
            pixelmed.INSTANCE_VALIDATOR)
        report = pixelmed.validate(validator, path)
        assert report.completed and unexplained(report) == [], (modality, report.errors)
    sr = pydicom.dcmread(by_modality["SR"])
    if not positive:
        # "no acute finding": the target is stated absent (SCT 272519000)
        absent = [i for i in content_items(sr, "432504007") if i.ValueType == "CODE"]
        assert any(i.ConceptCodeSequence[0].CodeValue == "272519000" for i in absent)
        return
    check = subprocess.run(["dcentvfy", str(study.files[-1]), str(by_modality["SEG"]),
                            str(by_modality["SR"])], capture_output=True, text=True,
                           timeout=120, check=False)
    assert [ln for ln in check.stderr.splitlines() if ln.startswith("Error")] == []
    [volume] = [v for v in content_items(sr, "118565006") if not content_items(v, "56851009")
                and v.ValueType == "NUM"][:1]
    measured = _number(volume)
    # the phantom's truth: the model's own accuracy (infernode models evaluate stroke reports
    # it on the held-out family) plus what the DICOM path adds
    assert measured == pytest.approx(study.truth_ml, rel=0.05)
    if study.case.adc in ("same-grid", "none"):
        # on the acquisition grid the DICOM path adds nothing: the SR says what the model says
        # on the phantom's own arrays
        assert measured == pytest.approx(_direct_ml(study), rel=0.01)
    [count] = content_items(sr, "246206008")
    assert int(_number(count)) == len(study.case.lesions)
    # and each lesion on its own, not only their sum
    truths = _lesion_volumes_truth(study)
    assert len(truths) == len(study.case.lesions)
    assert _lesion_volumes_sr(sr) == pytest.approx(truths, rel=0.05)
    sides = {i.ConceptCodeSequence[0].CodeMeaning for i in content_items(sr, "272741003")}
    expected = {lesion.hemisphere.capitalize() for lesion in study.case.lesions}
    assert expected <= sides


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_the_ehr_gets_the_volume_and_the_priority_follows_it(run: Run, name: str) -> None:
    study = _case(run, name)
    row = jobs(run.node)[study.study_instance_uid]
    result = job_result(row)
    positive = bool(study.case.lesions)
    assert (result.get("priority_flag") is not None) is (positive and study.truth_ml >= 1.0)
    paths = {o["kind"]: Path(o["path"]) for o in result["outputs"] if o["kind"] != "dicom"}
    text = paths["hl7-oru"].read_text(encoding="utf-8")
    parse_message(text.replace("\n", "\r"), validation_level=1)
    bundle = json.loads(paths["fhir-bundle"].read_text(encoding="utf-8"))
    report = next(e["resource"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "DiagnosticReport")
    if positive:
        assert "infarct core" in report["conclusion"]
        volumes = [c["valueQuantity"]["value"] for e in bundle["entry"]
                   for c in e["resource"].get("component", [])
                   if c["code"]["coding"][0]["code"] == "118565006"]
        assert volumes and volumes[0] == pytest.approx(study.truth_ml, rel=0.05)
    else:
        assert "No acute infarct" in report["conclusion"]
