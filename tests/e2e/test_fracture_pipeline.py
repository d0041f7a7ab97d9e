"""Radiographs through the real SCP (DCMTK storescu) to the fracture pipeline (the demo
detector, the default model) and into a real Orthanc PACS.

Cases (tests/e2e/fracture_studies.py): held-out phantoms as CR and DX, MONOCHROME1 and 2, 8 to
16 bits, every transfer syntax the node decodes, 512 px to about 3k px, the three ways a header
gives spacing, for presentation and for processing, two views in one study; a chest radiograph
and a colour image the model must refuse; the real CR/DX files of pydicom, pydicom-data and
deid-data. Checked: one attempt and the expected outcome (never a silent success); the SR (and
KOS when there are boxes) in the original study in Orthanc, valid for dciodvfy and PixelMed;
each SR box a closed 5-point POLYLINE inside its image, equal to the box the model draws on the
phantom's own array (the DICOM path moves no box), and most boxes on a drawn fracture (IoU >=
0.5) over 26 held-out fractures; FHIR Observations with body site and laterality.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hl7apy.parser import parse_message

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
from tests.e2e.fracture_studies import (
    CASES,
    LOCALISATION_CASES,
    WrittenFracture,
    real_files,
    write_fracture_study,
)
from tests.support.net import free_port
from tests.support.peers import pixelmed
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc
from tests.support.peers.pixelmed_allowlist import unexplained

pytestmark = requires_orthanc

SENDER = "XR_ROOM"
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    studies: list[WrittenFracture]
    real: dict[str, list[Path]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("fracture")
    studies = [write_fracture_study(folder / "studies", case, i)
               for i, case in enumerate(CASES + LOCALISATION_CASES, start=1)]
    real: dict[str, list[Path]] = {}
    for path in real_files():
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        real.setdefault(uid, []).append(path)
    with running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        senders=(SENDER,), quiet_period_s=3.0,
                        node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            sent = {s.study_instance_uid: s.files for s in studies} | real
            send_and_settle(node, sent, SENDER, "every radiograph study answered and delivered",
                            own_syntax=True)
            yield Run(node, pacs, studies, real)


def _case(run: Run, name: str) -> WrittenFracture:
    return next(s for s in run.studies if s.case.name == name)



def _sr_boxes(sr: Any) -> list[tuple[str, Box]]:
    """(referenced SOP Instance UID, box) of every SCOORD region in the SR."""
    boxes = []
    for region in content_items(sr, "111030"):  # DCM "Image Region"
        points = np.array(region.GraphicData, dtype=float).reshape(-1, 2)
        assert region.GraphicType == "POLYLINE" and len(points) == 5
        assert (points[0] == points[-1]).all()
        image = region.ContentSequence[0].ReferencedSOPSequence[0]
        boxes.append((str(image.ReferencedSOPInstanceUID), (
            float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))))
    return boxes


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@functools.cache
def _model() -> Any:
    from inference.registry import ModelRegistry

    return ModelRegistry([REPO / "models"], device="cpu", warmup=False).get("fracture-demo")


def _results(run: Run, study_uid: str, folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for series in study_series(run.pacs, study_uid):
        modality = series["MainDicomTags"].get("Modality")
        if modality in ("SR", "KO", "SEG"):
            [path] = download_series(run.pacs, series, folder / modality)
            found[modality] = path
    return found


def _valid(paths: dict[str, Path]) -> None:
    for modality, path in paths.items():
        assert dciodvfy_errors(path) == [], (modality, path)
        report = pixelmed.validate(pixelmed.SR_VALIDATOR, path)
        assert report.completed and unexplained(report) == [], (modality, report.errors)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_study_gets_its_answer_in_one_attempt(run: Run, name: str) -> None:
    study = _case(run, name)
    row = jobs(run.node)[study.study_instance_uid]
    assert (row["pipeline"], row["state"], row["attempts"], row["outcome"]) == (
        "fracture", "succeeded", 1, study.case.expect), row["last_error"]
    if study.case.reason:
        assert row["outcome_reason"] == study.case.reason
    summary = job_result(row)["summary"]
    if study.case.expect == "result":
        assert summary["images"] == study.case.views
    assert all(d["state"] == "delivered" for d in deliveries(run.node)
               if d["study_instance_uid"] == study.study_instance_uid)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_results_in_the_pacs_are_valid_and_boxes_are_the_models(
        run: Run, name: str, tmp_path: Path) -> None:
    study = _case(run, name)
    paths = _results(run, study.study_instance_uid, tmp_path)
    assert "SEG" not in paths and "SR" in paths
    _valid(paths)
    sr = pydicom.dcmread(paths["SR"])
    boxes = _sr_boxes(sr)
    assert ("KO" in paths) is bool(boxes)
    if study.case.expect != "result":
        return
    by_uid = {i.sop_instance_uid: i for i in study.images}
    for uid, box in boxes:
        image = by_uid[uid].phantom
        assert image is not None
        rows, cols = image.image.shape
        assert 0 <= box[0] < box[2] <= cols and 0 <= box[1] < box[3] <= rows
    # the model on the phantom's own arrays draws the same boxes: reading, downsampling and
    # encoding move none of them
    direct = _model().predict_images([i.phantom.radiograph(i.sop_instance_uid)
                                      for i in study.images if i.phantom is not None])
    expected = [(d.image_id, d.box) for d in direct.detections]
    assert len(boxes) == len(expected)
    for (uid, box), (want_uid, want) in zip(sorted(boxes), sorted(expected), strict=True):
        assert uid == want_uid and iou(box, want) >= 0.9, (box, want)


def test_boxes_land_on_the_drawn_fractures_for_most(run: Run, tmp_path: Path) -> None:
    # every box the node reported on a held-out fracture image, checked against the fractures
    # the phantom drew there (in the stored image's pixel coordinates)
    on_fracture, boxes, found, fractures = 0, 0, 0, 0
    for study in run.studies:
        if study.case.expect != "result" or not study.case.fractures:
            continue
        paths = _results(run, study.study_instance_uid, tmp_path / study.case.name)
        reported = _sr_boxes(pydicom.dcmread(paths["SR"]))
        truth = {i.sop_instance_uid: i.phantom.boxes for i in study.images if i.phantom}
        for uid, box in reported:
            boxes += 1
            on_fracture += any(iou(box, t) >= 0.5 for t in truth[uid])
        for uid, drawn in truth.items():
            for t in drawn:
                fractures += 1
                found += any(u == uid and iou(box, t) >= 0.5 for u, box in reported)
    # most boxes lie on a drawn fracture (IoU >= 0.5); how many fractures the demo finds at
    # its operating threshold is its sensitivity, measured by `models evaluate fracture`
    assert boxes >= 8 and on_fracture / boxes > 0.5, (on_fracture, boxes)
    assert fractures >= 25 and found >= 1, (found, fractures)


def test_the_normal_study_reads_no_fracture(run: Run) -> None:
    row = jobs(run.node)[_case(run, "dx-normal-knee").study_instance_uid]
    assert job_result(row)["summary"]["positive"] == ""


@pytest.mark.parametrize("name", [c.name for c in CASES if c.expect == "result"])
def test_the_ehr_gets_site_and_side(run: Run, name: str) -> None:
    study = _case(run, name)
    result = job_result(jobs(run.node)[study.study_instance_uid])
    paths = {o["kind"]: Path(o["path"]) for o in result["outputs"] if o["kind"] != "dicom"}
    parse_message(paths["hl7-oru"].read_text(encoding="utf-8").replace("\n", "\r"),
                  validation_level=1)
    bundle = json.loads(paths["fhir-bundle"].read_text(encoding="utf-8"))
    observations = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Observation"]
    assert observations
    for obs in observations:
        assert obs["bodySite"]["coding"][0]["system"] == "http://snomed.info/sct"
    side = "Left" if study.images[0].phantom and study.images[0].phantom.laterality == "left" \
        else "Right"
    positive = result["summary"]["positive"] == "fracture"
    # the default rule: any positive fracture result raises the priority signal
    assert (result.get("priority_flag") is not None) is positive
    if positive:
        assert any(side in json.dumps(o) for o in observations)


def test_real_files_get_a_report_never_a_silent_success(run: Run, tmp_path: Path) -> None:
    rows = jobs(run.node)
    outcomes = {}
    for uid, files in run.real.items():
        row = rows[uid]
        assert row["state"] == "succeeded" and row["attempts"] == 1, row["last_error"]
        assert row["outcome"] in ("result", "not_analysed")
        outcomes[files[0].name] = (row["outcome"], row["outcome_reason"])
        paths = _results(run, uid, tmp_path / uid)
        assert "SR" in paths
        _valid(paths)
    # the chests are not a body part the demo reads; the distal tibia is
    assert outcomes["cat.dcm"] == ("not_analysed", "body_part_not_supported")
    assert outcomes["RG1_J2KR.dcm"] == ("not_analysed", "body_part_not_supported")
    assert outcomes["RG3_UNCR.dcm"][0] == "result"
