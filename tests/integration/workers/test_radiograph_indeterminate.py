"""An honest "indeterminate" for radiographs, through the real node (DCMTK storescu in, Orthanc
PACS out) with the demo fracture model and its shipped card: a study whose only radiograph fails
the card's quality gate (a flat, contrast-free image) ends "indeterminate - read as usual" with
the reason, delivered like any result (SR in the PACS, dciodvfy-clean, FHIR, ORU), never a
negative; in a study with a good view and a thumbnail, the thumbnail is left out with its reason
and the good view gets its result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_node.synth import SYNTH_UID_ROOT
from inference.phantoms.radiograph import RadiographSpec as PhantomSpec
from inference.phantoms.radiograph import make_radiograph
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
from tests.support.net import free_port
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc
from tests.support.radiographs import RadiographSpec, radiograph_identity, write_radiograph

pytestmark = requires_orthanc

SENDER = "XR_ROOM"
FLAT = "flat"
MIXED = "mixed"


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    studies: dict[str, str]  # case -> Study Instance UID
    folder: Path

    def job(self, case: str) -> dict:
        return jobs(self.node)[self.studies[case]]


def _write(folder: Path, index: int, images: list[np.ndarray]) -> tuple[str, list[Path]]:
    """One study, one series, the images ([0, 1]) as 12-bit DX wrist views."""
    identity = radiograph_identity(patient_id=f"XRQ-{index:03d}",
                                   patient_name=f"Gate^Radiograph{index}",
                                   accession_number=f"XRQ{index:05d}",
                                   study_instance_uid=generate_uid(SYNTH_UID_ROOT))
    series = generate_uid(SYNTH_UID_ROOT)
    folder.mkdir(parents=True)
    paths = [write_radiograph(folder / f"view{n}.dcm", image,
                              RadiographSpec(identity=identity, series_instance_uid=series))
             for n, image in enumerate(images, start=1)]
    for n, path in enumerate(paths, start=1):  # the views' order in the study: 1, 2, ...
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = n
        ds.save_as(path)
    return identity.study_instance_uid, paths


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("radiograph-indeterminate")
    phantom = make_radiograph(PhantomSpec(body_part="WRIST", family="heldout", seed=31,
                                          rows=576, cols=480)).image
    good = (phantom - phantom.min()) / (phantom.max() - phantom.min())
    cases = {FLAT: [np.full((320, 288), 0.4)], MIXED: [good, good[::4, ::4]]}
    studies: dict[str, str] = {}
    files: dict[str, list[Path]] = {}
    for index, (case, images) in enumerate(cases.items(), start=1):
        uid, paths = _write(folder / case, index, images)
        studies[case], files[uid] = uid, paths
    with running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        senders=(SENDER,), quiet_period_s=1.0,
                        node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            send_and_settle(node, files, SENDER, "every radiograph study answered")
            yield Run(node, pacs, studies, folder)


def _texts(item: pydicom.Dataset) -> list[str]:
    found = [str(item.TextValue)] if "TextValue" in item else []
    for child in item.get("ContentSequence", []):
        found += _texts(child)
    return found


def test_a_radiograph_that_fails_the_gate_is_delivered_indeterminate(run: Run) -> None:
    row = run.job(FLAT)
    assert (row["state"], row["attempts"], row["outcome"], row["outcome_reason"]) == (
        "succeeded", 1, "indeterminate", "quality_gate"), row["last_error"]
    result = job_result(row)
    assert "input quality: image 1: no usable contrast" in result["summary"]["indeterminate"]
    assert json.loads(result["summary"]["quality"])["image 1"]["dynamic_range"] == 0.0
    assert sorted(o["kind"] for o in result["outputs"]) == ["dicom", "fhir-bundle", "hl7-oru"]
    rows = [d for d in deliveries(run.node) if d["study_instance_uid"] == run.studies[FLAT]]
    assert {d["kind"] for d in rows} >= {"dicom", "fhir-bundle"}
    assert all(d["state"] == "delivered" for d in rows), rows
    [series] = [s for s in study_series(run.pacs, run.studies[FLAT])
                if s["MainDicomTags"].get("Modality") == "SR"]
    download_series(run.pacs, series, run.folder / "sr")
    [path] = sorted((run.folder / "sr").glob("*.dcm"))
    assert dciodvfy_errors(path) == []
    sr = pydicom.dcmread(path)
    assert any(t.startswith("Indeterminate - read as usual: input quality") for t in _texts(sr))
    assert "Absent" not in json.dumps(sr.to_json_dict())  # never a silent negative


def test_a_failed_image_among_good_ones_is_left_out_with_its_reason(run: Run) -> None:
    row = run.job(MIXED)
    assert (row["state"], row["outcome"]) == ("succeeded", "result"), row["last_error"]
    summary = job_result(row)["summary"]
    assert summary["images"] == 1 and summary["images_skipped"] == 1
    assert summary["images_refused"] == (
        "image 2: image of 144 x 120 pixels, at least 256 rows and columns needed")
    measured = json.loads(summary["quality"])
    assert measured["image 1"]["rows"] == 576 and measured["image 1"]["dynamic_range"] > 0.3
    spread = json.loads(summary["uncertainty"])
    assert 0 <= spread["image_probability_spread"] <= 0.17
