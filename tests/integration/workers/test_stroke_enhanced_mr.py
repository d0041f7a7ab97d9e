"""An Enhanced MR diffusion study through the real SCP (DCMTK storescu), the stroke pipeline
(the ADC-threshold core, the default model) and into a real Orthanc PACS.

The DWI is ONE Enhanced MR image whose frames interleave b=0 and b=1000 (isotropic) at each
slice position, as scanners store it; the pipeline reads only its b=1000 frames, so the SEG is
laid on the image's full frame count with the b=0 frames empty, and must reference, frame by
frame, the b=1000 frame each mask frame was drawn on (Derivation Image functional group with
Referenced Frame Number, PS3.3 C.7.6.16.2.6) although a b=0 frame lies at the same position.

Variants: no ADC (computed from the image's own b=0 frames) and the scanner's ADC map as a
classic series of its own. Checked: one attempt with the expected roles; SEG, SR and KOS in
Orthanc, valid for dciodvfy and PixelMed, consistent with the source for dcentvfy; each SEG
frame references one b=1000 frame of the Enhanced MR at its own position; the SEG decodes back
(highdicom) to exactly the mask the model makes on the phantom's own arrays, nothing on the b=0
frames; the SR's core volume within 5% of the phantom truth.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from scipy import ndimage

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from dicom_node.volume.synth_enhanced import enhanced_series
from inference.phantoms.mr_stroke import (
    StrokeLesionSpec,
    StrokePhantom,
    StrokePhantomSpec,
    make_stroke_mr,
)
from inference.types import Volume
from infernode.node import Node
from tests.e2e.e2e_support import (
    REPO,
    NodePlan,
    content_items,
    dciodvfy_errors,
    download_series,
    job_result,
    jobs,
    node_settings,
    running_node,
    send_and_settle,
    study_series,
)
from tests.support.net import free_port
from tests.support.peers import pixelmed
from tests.support.peers.orthanc import OrthancServer, requires_orthanc, running_orthanc
from tests.support.peers.pixelmed_allowlist import unexplained

pytestmark = requires_orthanc

SENDER = "MR_SCANNER"
SHAPE = (24, 64, 64)
SPACING = (3.0, 2.6, 2.6)
B_VALUES = (0.0, 1000.0)
"""Frames per slice position, in stored order: frame 2k+1 is b=0, 2k+2 is b=1000."""


@dataclass(frozen=True)
class Case:
    name: str
    lesion: StrokeLesionSpec
    seed: int
    adc_series: bool
    """The scanner's ADC map as a classic series of its own; else the node computes the ADC
    from the Enhanced MR's b=0 frames."""


CASES = (
    Case("enhanced-no-adc", StrokeLesionSpec("left", 13.0), seed=3, adc_series=False),
    Case("enhanced-adc-series", StrokeLesionSpec("right", 12.0), seed=5, adc_series=True),
)


@dataclass(frozen=True)
class Study:
    case: Case
    study_instance_uid: str
    enhanced: Dataset
    files: list[Path]
    phantom: StrokePhantom

    @property
    def truth_ml(self) -> float:
        return float(self.phantom.truth.sum()) * float(np.prod(SPACING)) / 1000.0


def _stored(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 65535).astype(np.uint16)


def _geometry(volume: Volume) -> dict[str, Any]:
    """Placement arguments of the synth builders that put `volume`'s voxels where its affine
    says."""
    affine, spacing = volume.affine, volume.spacing
    return {"origin": tuple(float(v) for v in affine[:3, 3]),
            "row_direction": tuple(float(v) for v in affine[:3, 2] / spacing[2]),
            "column_direction": tuple(float(v) for v in affine[:3, 1] / spacing[1]),
            "slice_step": tuple(float(v) for v in affine[:3, 0])}


def _diffusion(b: float) -> DicomSequence:
    item = Dataset()
    item.DiffusionBValue = b
    item.DiffusionDirectionality = "ISOTROPIC" if b else "NONE"
    return DicomSequence([item])


def enhanced_dwi(phantom: StrokePhantom, identity: StudyIdentity, frame_of_reference: str
                 ) -> Dataset:
    """One Enhanced MR image of the phantom's b=0 and b=1000 volumes, their frames interleaved
    slice by slice (b=0 then b=1000 at each position), each frame with its MR Diffusion
    functional group."""
    spec = SeriesSpec(modality="MR", series_description="ep2d_diff_tra b0 b1000 TRACEW",
                      series_number=5, body_part="BRAIN",
                      frame_of_reference_uid=frame_of_reference,
                      image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"),
                      diffusion_b_value=1000.0)
    parts = [enhanced_series(_stored(v.array), v.spacing, identity=identity, spec=spec,
                             **_geometry(v)) for v in (phantom.b0, phantom.dwi)]
    out = parts[0]
    frame_bytes = len(out.PixelData) // SHAPE[0]
    items, pixels = [], []
    for k in range(SHAPE[0]):
        for part, b in zip(parts, B_VALUES, strict=True):
            item = copy.deepcopy(part.PerFrameFunctionalGroupsSequence[k])
            item.MRDiffusionSequence = _diffusion(b)
            items.append(item)
            pixels.append(part.PixelData[k * frame_bytes:(k + 1) * frame_bytes])
    out.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    out.PixelData = b"".join(pixels)
    out.NumberOfFrames = len(items)
    return out


def write_study(folder: Path, case: Case, index: int) -> Study:
    phantom = make_stroke_mr(StrokePhantomSpec(shape=SHAPE, spacing=SPACING,
                                               lesions=(case.lesion,), seed=case.seed))
    identity = StudyIdentity(patient_id=f"ENH-{index:03d}", patient_name=f"Enhanced^Case{index}",
                             accession_number=f"ENH{index:05d}",
                             study_description="MR BRAIN WO CONTRAST")
    frame = f"1.2.826.0.1.3680043.10.1563.7.90{index}"
    enhanced = enhanced_dwi(phantom, identity, frame)
    path = folder / case.name / "enhanced.dcm"
    path.parent.mkdir(parents=True)
    enhanced.save_as(path, enforce_file_format=True)
    files = [path]
    if case.adc_series:
        spec = SeriesSpec(modality="MR", series_description="ep2d_diff_tra_ADC",
                          series_number=6, body_part="BRAIN", frame_of_reference_uid=frame,
                          image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"))
        adc = volume_series(_stored(phantom.adc.array), SPACING, identity=identity, spec=spec,
                            **_geometry(phantom.adc))
        files += [Path(p) for p in write_series(adc, str(folder / case.name / "adc"))]
    return Study(case, identity.study_instance_uid, enhanced, files, phantom)


@dataclass(frozen=True)
class Run:
    node: Node
    pacs: OrthancServer
    studies: list[Study]
    results: Path

    def study(self, name: str) -> Study:
        return next(s for s in self.studies if s.case.name == name)

    def outputs(self, study: Study) -> dict[str, Path]:
        """Modality (SEG, SR, KO) -> the file Orthanc holds, downloaded once."""
        found: dict[str, Path] = {}
        for series in study_series(self.pacs, study.study_instance_uid):
            modality = series["MainDicomTags"].get("Modality")
            if modality in ("SEG", "SR", "KO"):
                folder = self.results / study.case.name / modality
                paths = sorted(folder.glob("*.dcm")) or download_series(self.pacs, series,
                                                                         folder)
                [found[modality]] = paths
        return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("stroke-enhanced")
    studies = [write_study(folder / "studies", case, i)
               for i, case in enumerate(CASES, start=1)]
    with running_orthanc(folder / "orthanc") as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        senders=(SENDER,), quiet_period_s=1.0,
                        node={"dicom": {"assembly_poll_s": 0.1}})
        with running_node(node_settings(plan)) as node:
            send_and_settle(node, {s.study_instance_uid: s.files for s in studies}, SENDER,
                            "every Enhanced MR stroke study analysed and delivered")
            yield Run(node, pacs, studies, folder / "results")


@functools.cache
def _model() -> Any:
    from inference.registry import ModelRegistry

    return ModelRegistry([REPO / "models"], device="cpu", warmup=False).get(
        "stroke-adc-threshold")


def _direct_mask(study: Study) -> np.ndarray:
    """The core mask the default stroke model makes on the phantom's own arrays."""
    channels = ("dwi", "adc") if study.case.adc_series else ("dwi", "b0")
    prediction = _model().predict_input(study.phantom.study_input(channels), b_value=1000.0)
    return np.asarray(prediction.masks[0].mask, dtype=bool)



NAMES = [c.name for c in CASES]


@pytest.mark.parametrize("name", NAMES)
def test_each_study_gets_a_result_in_one_attempt(run: Run, name: str) -> None:
    study = run.study(name)
    row = jobs(run.node)[study.study_instance_uid]
    assert (row["pipeline"], row["state"], row["attempts"], row["outcome"]) == (
        "stroke", "succeeded", 1, "result"), row["last_error"]
    summary = job_result(row)["summary"]
    chosen = json.loads(summary["selection"])["chosen"]
    roles = {c["role"]: c["series_instance_uid"] for c in chosen}
    assert sorted(roles) == (["adc", "dwi"] if study.case.adc_series else ["b0", "dwi"])
    assert roles["dwi"] == study.enhanced.SeriesInstanceUID
    assert summary["series"] == study.enhanced.SeriesInstanceUID
    assert summary["slices"] == SHAPE[0]  # the b=1000 frames only


@pytest.mark.parametrize("name", NAMES)
def test_seg_sr_and_kos_in_the_pacs_are_valid(run: Run, name: str) -> None:
    study = run.study(name)
    outputs = run.outputs(study)
    assert sorted(outputs) == ["KO", "SEG", "SR"]
    for path in outputs.values():
        assert dciodvfy_errors(path) == [], path
    for modality, path in outputs.items():
        validator = pixelmed.SR_VALIDATOR if modality in ("SR", "KO") else (
            pixelmed.INSTANCE_VALIDATOR)
        report = pixelmed.validate(validator, path)
        assert report.completed and unexplained(report) == [], (modality, report.errors)
    # the source and the results as one study: patient and study attributes agree
    check = subprocess.run(["dcentvfy", str(study.files[0]), *map(str, outputs.values())],
                           capture_output=True, text=True, timeout=120, check=False)
    assert [ln for ln in check.stderr.splitlines() if ln.startswith("Error")] == []


def _frame_position(ds: Dataset, frame_number: int) -> np.ndarray:
    item = ds.PerFrameFunctionalGroupsSequence[frame_number - 1]
    return np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])


@pytest.mark.parametrize("name", NAMES)
def test_seg_frames_reference_the_b1000_frames_they_were_drawn_on(run: Run, name: str) -> None:
    study = run.study(name)
    seg = pydicom.dcmread(run.outputs(study)["SEG"])
    enhanced = study.enhanced
    assert [s.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence
            for s in r.ReferencedInstanceSequence] == [enhanced.SOPInstanceUID]
    referenced = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        [derivation] = item.DerivationImageSequence
        [source] = derivation.SourceImageSequence  # one frame, not every frame at the position
        assert source.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID
        frame = int(source.ReferencedFrameNumber)
        assert enhanced.PerFrameFunctionalGroupsSequence[frame - 1].MRDiffusionSequence[
            0].DiffusionBValue == 1000.0
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, _frame_position(enhanced, frame), atol=1e-3)
        referenced.append(frame)
    assert referenced and all(f % 2 == 0 for f in referenced)


@pytest.mark.parametrize("name", NAMES)
def test_seg_decodes_back_to_the_mask_the_model_makes(run: Run, name: str) -> None:
    study = run.study(name)
    seg = hd.seg.segread(run.outputs(study)["SEG"])
    frames = seg.get_pixels_by_source_frame(
        study.enhanced.SOPInstanceUID,
        source_frame_numbers=list(range(1, SHAPE[0] * len(B_VALUES) + 1)),
        segment_numbers=[1], combine_segments=True, assert_missing_frames_are_empty=True)
    assert frames.shape == (SHAPE[0] * len(B_VALUES), *SHAPE[1:])
    assert not frames[0::2].any()  # the b=0 frames
    expected = _direct_mask(study)
    assert expected.sum() > 100
    np.testing.assert_array_equal(frames[1::2].astype(bool), expected)


@pytest.mark.parametrize("name", NAMES)
def test_sr_volume_is_the_phantom_truth(run: Run, name: str) -> None:
    study = run.study(name)
    sr = pydicom.dcmread(run.outputs(study)["SR"])
    [volume] = [v for v in content_items(sr, "118565006") if not content_items(v, "56851009")
                and v.ValueType == "NUM"][:1]
    measured = float(volume.MeasuredValueSequence[0].NumericValue)
    assert measured == pytest.approx(study.truth_ml, rel=0.05)
    direct = float(_direct_mask(study).sum()) * float(np.prod(SPACING)) / 1000.0
    assert measured == pytest.approx(direct, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_the_kos_opens_the_b1000_frame_with_the_largest_core(run: Run, name: str) -> None:
    study = run.study(name)
    kos = pydicom.dcmread(run.outputs(study)["KO"])
    [image] = [i for i in kos.ContentSequence if i.ValueType == "IMAGE"]
    reference = image.ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == study.enhanced.SOPInstanceUID
    frame = int(reference.ReferencedFrameNumber)
    assert frame % 2 == 0  # a b=1000 frame
    areas = _direct_mask(study).reshape(SHAPE[0], -1).sum(axis=1)
    assert frame == 2 * (int(np.argmax(areas)) + 1)


def _lesion_group_images(sr: Dataset) -> list[Dataset]:
    """IMAGE items of the SR's per-lesion groups, lesion 1 (the largest) first."""
    groups = [g for g in content_items(sr, "125007") if any(
        " lesion " in str(t.get("TextValue", "")) for t in g.get("ContentSequence", []))]
    return [c for g in groups for c in g.ContentSequence if c.ValueType == "IMAGE"]


@pytest.mark.parametrize("name", NAMES)
def test_sr_lesion_groups_open_the_b1000_frame_where_each_lesion_is_largest(
        run: Run, name: str) -> None:
    study = run.study(name)
    sr = pydicom.dcmread(run.outputs(study)["SR"])
    images = _lesion_group_images(sr)
    assert images, "no per-lesion group with a key image"
    labels, _ = ndimage.label(_direct_mask(study), structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    reference = images[0].ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == study.enhanced.SOPInstanceUID
    # the b=1000 frame of the slice where lesion 1 has its largest area
    expected = 2 * (int(np.argmax(largest.reshape(SHAPE[0], -1).sum(axis=1))) + 1)
    assert int(reference.ReferencedFrameNumber) == expected
