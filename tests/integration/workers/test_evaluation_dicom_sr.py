"""Fracture evaluation on DICOM + SR cases: held-out radiograph phantoms written as CR/DX files,
with a reference TID 1500 SR of the phantom's truth boxes made by highdicom, score as the
phantoms do; a case that cannot be read is named with the reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_node.synth import SYNTH_UID_ROOT
from inference.evaluation.detection import DetectionCase, evaluate_detection
from inference.phantoms.radiograph import RadiographPhantom, RadiographSpec, make_radiograph
from inference.registry import ModelRegistry
from tests.support.radiographs import RadiographSpec as FileSpec
from tests.support.radiographs import radiograph_identity, write_radiograph
from workers.evaluation import (
    DicomSrCaseError,
    dicom_sr_case,
    dicom_sr_cases,
    dicom_sr_detection_cases,
    region_box,
)

REPO = Path(__file__).resolve().parents[3]
FRACTURE = hd.sr.CodedConcept("72704001", "SCT", "Fracture")


@dataclass(frozen=True)
class Image:
    """One image of a case: the phantom to draw, how to write it, its region's shape."""

    body_part: str
    fractures: int
    seed: int
    file: tuple[tuple[str, Any], ...] = ()
    ellipse: bool = False


CASES: dict[str, tuple[Image, ...]] = {
    "a-wrist-two-views": (Image("WRIST", 1, 101), Image("WRIST", 0, 102)),
    "b-cr-monochrome1": (Image("FOREARM", 2, 103, (("modality", "CR"),
                                                   ("photometric", "MONOCHROME1"))),
                         Image("HAND", 1, 104, ellipse=True)),
    "c-jpeg-ls": (Image("LEG", 1, 105, (("transfer_syntax", "jpeg-ls"),)),
                  Image("ANKLE", 0, 106), Image("KNEE", 1, 107)),
    "d-normal": (Image("FOOT", 0, 108),),
}


@dataclass(frozen=True)
class Written:
    uid: str
    phantom: RadiographPhantom


def _bits(image: np.ndarray) -> int:
    """The fewest bits the writer offers that hold the phantom's stored values exactly."""
    return next(b for b in (8, 12, 16) if float(image.max()) <= 2 ** b - 1)


def _write_image(folder: Path, k: int, im: Image, identity: Any) -> tuple[Path, Written]:
    ph = make_radiograph(RadiographSpec(body_part=im.body_part, fractures=im.fractures,
                                        family="heldout", seed=im.seed, rows=640, cols=512))
    bits = _bits(ph.image)
    spacing = tuple(round(v, 6) for v in ph.pixel_spacing_mm)
    spec = FileSpec(identity=identity, bits=bits, spacing=spacing, body_part=im.body_part,
                    laterality="L" if ph.laterality == "left" else "R",
                    series_description=f"{im.body_part.title()} view {k + 1}")
    spec = replace(spec, **dict(im.file))
    # the phantom's stored values divided by the top value: written back exactly
    path = write_radiograph(folder / f"image{k + 1}.dcm",
                            ph.image.astype(np.float64) / (2 ** bits - 1), spec)
    return path, Written(spec.sop_instance_uid, ph)


def _region(box: tuple[float, ...], ellipse: bool) -> tuple[Any, np.ndarray]:
    x0, y0, x1, y1 = box
    if not ellipse:
        return hd.sr.GraphicTypeValues.POLYLINE, np.array(
            [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    across, down = [[x0, cy], [x1, cy]], [[cx, y0], [cx, y1]]
    axes = across + down if x1 - x0 >= y1 - y0 else down + across
    return hd.sr.GraphicTypeValues.ELLIPSE, np.array(axes)


def _reference_sr(images: list[Dataset], written: list[Written],
                  ellipses: list[bool]) -> hd.sr.Comprehensive3DSR:
    """A reader's TID 1500 report: one planar group per truth box, on its image."""
    groups: list[Any] = []
    for ds, w, ellipse in zip(images, written, ellipses, strict=True):
        for n, box in enumerate(w.phantom.boxes):
            kind, points = _region(box, ellipse)
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(),
                                                             identifier=f"fracture {n + 1}"),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=kind, graphic_data=points,
                    source_image=hd.sr.SourceImageForRegion(ds.SOPClassUID, ds.SOPInstanceUID)),
                finding_type=FRACTURE))
    if not groups:  # a normal study: a study-level group (TID 1501) with no region
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="study"),
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                FRACTURE, hd.sr.CodedConcept("2667000", "SCT", "Absent"))]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=hd.sr.CodedConcept("RPID2534", "RADLEX", "XR extremity"),
        imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=images, content=report, series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="reader", is_complete=True)


def write_case(folder: Path, images: tuple[Image, ...]) -> list[Written]:
    identity = radiograph_identity(study_instance_uid=generate_uid(SYNTH_UID_ROOT))
    folder.mkdir(parents=True, exist_ok=True)
    paths, written = zip(*(_write_image(folder, k, im, identity)
                           for k, im in enumerate(images)), strict=True)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    _reference_sr(headers, list(written), [im.ellipse for im in images]).save_as(
        folder / "reference-sr.dcm")
    return list(written)


@pytest.fixture(scope="module")
def model():
    return ModelRegistry([REPO / "models"], device="cpu", warmup=False).get("fracture-demo")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Written]]:
    root = tmp_path_factory.mktemp("dicom-sr")
    written = [w for name, images in CASES.items() for w in write_case(root / name, images)]
    return root, written


def test_cases_carry_each_image_with_the_sr_boxes(cases) -> None:
    root, written = cases
    read = dicom_sr_cases(root)
    by_uid = {w.uid: w.phantom for w in written}
    assert sorted(im.sop_instance_uid for im in read) == sorted(by_uid)
    assert [im.case for im in read][:2] == ["a-wrist-two-views"] * 2
    assert sum(len(im.truth) for im in read) == sum(len(p.boxes) for p in by_uid.values()) == 6
    for im in read:
        ph = by_uid[im.sop_instance_uid]
        assert im.body_part == ph.body_part
        # SCOORD Graphic Data are 32-bit floats
        assert np.allclose(im.truth, ph.boxes, rtol=1e-6, atol=1e-3) or (
            not im.truth and not ph.boxes)
    for case in dicom_sr_detection_cases(read):
        ph = by_uid[case.image.image_id]
        assert case.image.array.shape == ph.image.shape
        assert case.image.laterality == ph.laterality


def test_metrics_equal_the_phantom_evaluation_of_the_same_images(cases, model) -> None:
    root, written = cases
    images = dicom_sr_cases(root)
    on_dicom = evaluate_detection(model, dicom_sr_detection_cases(images), "dicom-sr", "m",
                                  n_boot=0)
    by_uid = {w.uid: w.phantom for w in written}
    direct = evaluate_detection(model, [
        DetectionCase(by_uid[im.sop_instance_uid].radiograph(im.sop_instance_uid),
                      by_uid[im.sop_instance_uid].boxes) for im in images], "phantoms", "m",
        n_boot=0)
    a, b = on_dicom.as_dict(), direct.as_dict()
    assert (a["n_images"], a["n_positive_images"], a["n_truth_boxes"]) == (8, 5, 6)
    assert (a["n_images"], a["n_positive_images"], a["n_truth_boxes"]) == (
        b["n_images"], b["n_positive_images"], b["n_truth_boxes"])
    for key in ("ap50", "ap50_95", "image_auc"):
        assert a[key]["value"] == pytest.approx(b[key]["value"], abs=0.01), key
    for key, est in a["froc"].items():
        assert est["value"] == pytest.approx(b["froc"][key]["value"], abs=0.01), key
    assert a["image_counts"] == b["image_counts"]


def _image_item(uid: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", uid
    item = Dataset()
    item.ValueType, item.RelationshipType, item.ReferencedSOPSequence = (
        "IMAGE", "SELECTED FROM", [ref])
    return item


def _scoord(kind: str, points: list[float], refs: int = 1) -> Dataset:
    item = Dataset()
    item.ValueType, item.GraphicType, item.GraphicData = "SCOORD", kind, points
    item.ContentSequence = [_image_item(f"1.2.3.{k}") for k in range(refs)]
    return item


def test_region_shapes_give_their_bounding_box() -> None:
    assert region_box(_scoord("POLYLINE", [10, 20, 30, 22, 25, 40, 10, 20])) == (
        "1.2.3.0", (10.0, 20.0, 30.0, 40.0))
    assert region_box(_scoord("CIRCLE", [50, 50, 53, 54]))[1] == (45.0, 45.0, 55.0, 55.0)
    # an ellipse turned 45 degrees: semi-axes 10*sqrt(2) and 5*sqrt(2) along the diagonals
    uid, box = region_box(_scoord("ELLIPSE", [90, 90, 110, 110, 105, 95, 95, 105]))
    assert box == pytest.approx((100 - np.sqrt(125), 100 - np.sqrt(125),
                                 100 + np.sqrt(125), 100 + np.sqrt(125)))
    for bad, match in ((_scoord("POINT", [5, 5]), "POINT region of 1 point"),
                       (_scoord("POLYLINE", [1, 1, 9, 9]), "2 point"),
                       (_scoord("POLYLINE", [1, 1, 9, 1, 9, 9], refs=0), "references 0 images")):
        with pytest.raises(DicomSrCaseError, match=match):
            region_box(bad, "x")


def _copy(src: Path, dst: Path, skip: str = "") -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name != skip:
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_case_it_cannot_read_is_named_with_the_reason(cases, tmp_path) -> None:
    root, _ = cases
    two = _copy(root / "a-wrist-two-views", tmp_path / "two-srs")
    (two / "second-sr.dcm").write_bytes((root / "d-normal" / "reference-sr.dcm").read_bytes())
    with pytest.raises(DicomSrCaseError, match="case two-srs: 2 DICOM SR objects"):
        dicom_sr_case(two)
    no_sr = _copy(root / "a-wrist-two-views", tmp_path / "no-sr", skip="reference-sr.dcm")
    with pytest.raises(DicomSrCaseError, match="case no-sr: 0 DICOM SR objects"):
        dicom_sr_case(no_sr)
    elsewhere = _copy(root / "b-cr-monochrome1", tmp_path / "sr-of-another-study",
                      skip="reference-sr.dcm")
    (elsewhere / "sr.dcm").write_bytes((root / "a-wrist-two-views" / "reference-sr.dcm")
                                       .read_bytes())
    with pytest.raises(DicomSrCaseError, match="case sr-of-another-study: the SR marks an image "
                                               "that is not in the case"):
        dicom_sr_case(elsewhere)
    with pytest.raises(DicomSrCaseError, match="shows WRIST, not a body part the model reads"):
        dicom_sr_case(root / "a-wrist-two-views", body_parts=("LEG",))


def _truncate_pixels(path: Path) -> None:
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(path)


def test_unreadable_pixels_and_unknown_body_part_name_the_case(cases, tmp_path) -> None:
    root, _ = cases
    broken = _copy(root / "a-wrist-two-views", tmp_path / "data" / "broken-pixels")
    _truncate_pixels(broken / "image2.dcm")
    images = dicom_sr_cases(tmp_path / "data")  # headers and the SR are fine
    with pytest.raises(DicomSrCaseError, match="case broken-pixels: image .* cannot be read "
                                               r"\(unreadable_pixels\)"):
        list(dicom_sr_detection_cases(images))
    unnamed = tmp_path / "no-body-part"
    write_case(unnamed, (Image("WRIST", 1, 109, (("body_part", None),
                                                 ("anatomic_region", False),
                                                 ("series_description", "view 1"),
                                                 ("identity", radiograph_identity(
                                                     study_description="XR")))),))
    with pytest.raises(DicomSrCaseError, match="case no-body-part: image .* names no body part"):
        dicom_sr_case(unnamed)
    assert [im.body_part for im in dicom_sr_case(unnamed, body_part="wrist")] == ["WRIST"]


def test_the_cli_evaluates_dicom_sr_cases_and_names_a_bad_one(cases, tmp_path) -> None:
    from typer.testing import CliRunner

    from infernode.cli import app

    root, _ = cases
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "models", "evaluate", "fracture", "--layout", "dicom-sr", "--data", str(root),
        "--json", str(out), "--models", str(REPO / "models")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert (report["n_images"], report["n_truth_boxes"]) == (8, 6)
    assert report["dataset"] == f"dicom-sr:{root}"
    broken = _copy(root / "c-jpeg-ls", tmp_path / "bad" / "case-y")
    _truncate_pixels(broken / "image2.dcm")
    result = CliRunner().invoke(app, [
        "models", "evaluate", "fracture", "--layout", "dicom-sr", "--data",
        str(tmp_path / "bad"), "--models", str(REPO / "models")])
    assert result.exit_code == 2 and "case case-y" in result.output, result.output
