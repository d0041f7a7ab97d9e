"""Stroke evaluation on DICOM + SEG cases: MR stroke phantoms written as a scanner's diffusion
series, with a reference SEG of the phantom's truth made by highdicom, score as the phantoms do."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_node.synth import StudyIdentity, write_series
from inference.evaluation.stroke import SegmentationCase, evaluate_segmentation
from inference.phantoms.mr_stroke import (
    StrokeLesionSpec,
    StrokePhantom,
    StrokePhantomSpec,
    make_stroke_mr,
)
from inference.registry import ModelRegistry
from infernode.samples import b_in_comments, diffusion_series
from workers.evaluation import DicomSegCaseError, dicom_seg_case, dicom_seg_cases

REPO = Path(__file__).resolve().parents[3]


def _phantom(seed: int, lesions: tuple[StrokeLesionSpec, ...]) -> StrokePhantom:
    return make_stroke_mr(StrokePhantomSpec(shape=(24, 72, 72), spacing=(4.0, 2.8, 2.8),
                                            lesions=lesions, seed=seed))


def _reference_seg(dwi_images: list[Dataset], ph: StrokePhantom) -> Dataset:
    """A SEG of the phantom's truth referencing the b=1000 images, one frame per image."""
    origin, step = ph.dwi.affine[:3, 3], ph.dwi.affine[:3, 0]
    frames = []
    for ds in dwi_images:
        offset = np.asarray([float(v) for v in ds.ImagePositionPatient]) - origin
        frames.append(ph.truth[int(round(float(offset @ step) / float(step @ step)))])
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="infarct",
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologically abnormal structure"),
        segmented_property_type=hd.sr.CodedConcept("55641003", "SCT", "Infarct"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    return hd.seg.Segmentation(
        source_images=dwi_images, pixel_array=np.stack(frames).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=90,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="reader",
        manufacturer_model_name="manual", software_versions="1", device_serial_number="1",
        omit_empty_frames=False)


def _write_case(folder: Path, ph: StrokePhantom, with_adc: bool = True) -> Dataset:
    identity = StudyIdentity(study_description="MR BRAIN")
    datasets = diffusion_series(ph.b0, ph.dwi, ph.adc if with_adc else None, identity=identity,
                                frame_of_reference_uid=hd.UID(), place_b=b_in_comments)
    n = ph.dwi.array.shape[0]
    seg = _reference_seg(datasets[n:2 * n], ph)
    for k, series in enumerate((datasets[:2 * n], datasets[2 * n:])):
        if series:
            write_series(series, str(folder / f"series{k}"))
    seg.save_as(folder / "reference-seg.dcm")
    return seg


@pytest.fixture(scope="module")
def model():
    return ModelRegistry([REPO / "models"], device="cpu", warmup=False).get(
        "stroke-adc-threshold")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StrokePhantom]]:
    root = tmp_path_factory.mktemp("dicom-seg")
    phantoms = [_phantom(3, (StrokeLesionSpec.of_volume("left", 9.0),)),
                _phantom(8, (StrokeLesionSpec.of_volume("right", 6.0),
                             StrokeLesionSpec.of_volume("right", 2.0)))]
    _write_case(root / "a-adc", phantoms[0])
    _write_case(root / "b-b0-only", phantoms[1], with_adc=False)
    return root, phantoms


def test_cases_read_the_series_and_put_the_seg_on_the_dwi_grid(cases) -> None:
    root, phantoms = cases
    read = dicom_seg_cases(root)
    assert [c.case_id for c in read] == ["a-adc", "b-b0-only"]
    for case, ph in zip(read, phantoms, strict=True):
        assert case.truth.shape == ph.truth.shape
        assert np.array_equal(case.truth, ph.truth)
        assert np.array_equal(case.inp.volumes["dwi"].array, ph.dwi.array)
    assert sorted(read[0].inp.volumes) == ["adc", "dwi"] and read[0].options == {}
    assert sorted(read[1].inp.volumes) == ["b0", "dwi"]
    assert read[1].options == {"b_value": 1000.0}


def test_dice_equals_the_phantom_evaluation(cases, model) -> None:
    root, phantoms = cases
    on_dicom = evaluate_segmentation(model, dicom_seg_cases(root), "dicom-seg", "m", n_boot=0)
    direct = evaluate_segmentation(
        model, [SegmentationCase(f"p{i}", ph.study_input(), ph.truth)
                for i, ph in enumerate(phantoms[:1])]
        + [SegmentationCase("p1", phantoms[1].study_input(("dwi", "b0")), phantoms[1].truth,
                            {"b_value": 1000.0})], "phantoms", "m", n_boot=0)
    for a, b in zip(on_dicom.cases, direct.cases, strict=True):
        assert a.truth_ml == pytest.approx(b.truth_ml)
        assert a.dice == pytest.approx(b.dice, abs=0.01)
        assert a.dice >= 0.8
    assert on_dicom.as_dict()["lesion_counts"] == {"tp": 3, "fp": 0, "fn": 0}


def test_frames_are_placed_by_position_without_source_references(cases, tmp_path) -> None:
    root, phantoms = cases
    case = tmp_path / "positions"
    seg = _write_case(case, phantoms[0])
    for item in seg.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    seg.save_as(case / "reference-seg.dcm")
    assert np.array_equal(dicom_seg_case(case).truth, phantoms[0].truth)


def test_a_case_it_cannot_read_is_named_with_the_reason(cases, tmp_path) -> None:
    root, phantoms = cases
    no_seg = tmp_path / "root" / "no-seg"
    _write_case(no_seg, phantoms[0])
    (no_seg / "reference-seg.dcm").unlink()
    with pytest.raises(DicomSegCaseError, match="case no-seg: 0 DICOM SEG objects"):
        dicom_seg_cases(tmp_path / "root")
    only_seg = tmp_path / "only-seg"
    only_seg.mkdir()
    (only_seg / "seg.dcm").write_bytes((root / "a-adc" / "reference-seg.dcm").read_bytes())
    with pytest.raises(DicomSegCaseError, match="case only-seg: no DICOM images"):
        dicom_seg_case(only_seg)
    elsewhere = tmp_path / "elsewhere"
    _write_case(elsewhere, phantoms[0])
    moved = pydicom.dcmread(elsewhere / "reference-seg.dcm")
    for item in moved.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
        item.PlanePositionSequence[0].ImagePositionPatient[2] += 500.0
    moved.save_as(elsewhere / "reference-seg.dcm")
    with pytest.raises(DicomSegCaseError, match="matches no DWI slice"):
        dicom_seg_case(elsewhere)


def test_the_cli_evaluates_dicom_seg_cases_and_names_a_bad_one(cases, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from infernode.cli import app

    root, _ = cases
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "models", "evaluate", "stroke", "--layout", "dicom-seg", "--data", str(root),
        "--n", "2", "--json", str(out), "--models", str(REPO / "models")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_cases"] == 2 and report["dice"]["mean"] >= 0.8
    empty = tmp_path / "empty"
    (empty / "case-x").mkdir(parents=True)
    result = CliRunner().invoke(app, [
        "models", "evaluate", "stroke", "--layout", "dicom-seg", "--data", str(empty),
        "--models", str(REPO / "models")])
    assert result.exit_code == 2 and "case-x" in result.output
