"""What every viewer shows: the demo's positive head CT (haemorrhage) and MR (infarct) through
the real SCP arrive in a real Orthanc with SEG, SR, KOS, an overlay series (Secondary Capture,
result burned in) and a GSPS, all dciodvfy-clean; Orthanc renders each overlay image
(`/instances/{id}/preview`) at its size; the ICH overlay carries the Grad-CAM heatmap."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from infernode.node import Node
from infernode.samples import write_sample_studies
from tests.e2e.e2e_support import (
    NodePlan,
    dciodvfy_errors,
    deliveries,
    download_series,
    node_settings,
    running_node,
    send_and_settle,
    study_series,
)
from tests.support.net import free_port
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc

pytestmark = requires_orthanc


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    studies: dict[str, str]  # what it shows -> Study Instance UID
    source_series: dict[str, set[str]]  # what it shows -> Series Instance UIDs sent
    folder: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("overlays")
    written = write_sample_studies(folder / "samples")
    # the haemorrhage CT (study1) and the infarct MR (study3)
    chosen = {"ich": (written[0][0], folder / "samples" / "study1"),
              "stroke": (written[2][0], folder / "samples" / "study3")}
    with running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        quiet_period_s=3.0, node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            send_and_settle(node, {i.study_instance_uid: sorted(p.rglob("*.dcm"))
                                   for i, p in chosen.values()}, "ORTHANC",
                            "the positive CT and MR analysed and delivered")
            series = {k: {str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)
                          for f in p.rglob("*.dcm")} for k, (_, p) in chosen.items()}
            yield Run(node, pacs, {k: i.study_instance_uid for k, (i, _) in chosen.items()},
                      series, folder)


def _results(run: Run, which: str) -> dict[str, list[tuple[str, Path]]]:
    """Modality -> (Orthanc id, file) of every result series Orthanc holds in the study."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for series in study_series(run.pacs, run.studies[which]):
        modality = series["MainDicomTags"]["Modality"]
        if modality in ("CT", "MR"):
            continue
        paths = download_series(run.pacs, series, run.folder / "readback" / series["ID"])
        found.setdefault(modality, []).extend(zip(series["Instances"], paths, strict=True))
    return found


@pytest.mark.parametrize("which", ["ich", "stroke"])
def test_seg_sr_kos_overlay_and_gsps_arrive_valid(run: Run, which: str) -> None:
    assert {d["state"] for d in deliveries(run.node)} == {"delivered"}
    found = _results(run, which)
    assert sorted(found) == ["KO", "OT", "PR", "SEG", "SR"], sorted(found)
    assert len(found["PR"]) == 1
    for modality, items in found.items():
        for _, path in items:
            assert dciodvfy_errors(path) == [], (modality, path)
    sources = run.source_series[which]
    for orthanc_id, path in found["OT"]:
        ds = pydicom.dcmread(path)
        assert ds.BurnedInAnnotation == "YES" and ds.StudyInstanceUID == run.studies[which]
        assert str(ds.SeriesInstanceUID) not in sources
        with run.pacs.client() as http:
            response = http.get(f"/instances/{orthanc_id}/preview")
        response.raise_for_status()
        assert response.headers["content-type"] == "image/png"
        preview = Image.open(io.BytesIO(response.content))
        assert preview.size == (int(ds.Columns), int(ds.Rows))
        # Orthanc shows the colours: the banner's yellow survives its rendering
        pixels = np.asarray(preview.convert("RGB"))
        assert np.all(pixels[: pixels.shape[0] // 8] == (255, 255, 0), axis=2).sum() > 200
    gsps = pydicom.dcmread(found["PR"][0][1])
    referenced = [i for s in gsps.ReferencedSeriesSequence for i in s.ReferencedImageSequence]
    assert referenced and {str(s.SeriesInstanceUID)
                           for s in gsps.ReferencedSeriesSequence} <= sources, sources


def test_the_ich_overlay_shows_the_grad_cam_heatmap(run: Run) -> None:
    found = _results(run, "ich")
    comments = [str(pydicom.dcmread(p).get("ImageComments", "")) for _, p in found["OT"]]
    assert any("GRAD-CAM" in c for c in comments), comments
