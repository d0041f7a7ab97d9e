"""Series selection on real-looking study headers: the right series and a reason for each."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from dicom_node.selection import (
    IchCriteria,
    select_ich,
    series_facts,
    study_facts,
)
from dicom_node.synth import (
    SeriesSpec,
    StudyIdentity,
    radiograph,
    volume_series,
    write_series,
)
from dicom_node.volume.synth_enhanced import enhanced_series
from tests.unit.dicom_node.volume.volume_builders import ODD_HEADERS, odd_series
from workers.pipelines.fracture import select_fracture
from workers.pipelines.stroke import select_stroke

STUDY = StudyIdentity()
AXIAL = {"row_direction": (1, 0, 0), "column_direction": (0, 1, 0)}
CORONAL = {"row_direction": (1, 0, 0), "column_direction": (0, 0, -1)}
SAGITTAL = {"row_direction": (0, 1, 0), "column_direction": (0, 0, -1)}


def ct(n: int, thickness: float, description: str, number: int, *, kernel: str = "",
       image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
       orientation: dict | None = None, **attributes: object) -> list[Dataset]:
    spec = SeriesSpec(series_description=description, series_number=number,
                      image_type=image_type)
    datasets = volume_series(np.zeros((n, 4, 4), np.int16), (thickness, 0.5, 0.5),
                             identity=STUDY, spec=spec, **(orientation or AXIAL))
    for ds in datasets:
        if kernel:
            ds.ConvolutionKernel = kernel
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
    return datasets


def dose_screen() -> list[Dataset]:
    ds = ct(1, 5.0, "Dose Report", 900, image_type=("DERIVED", "SECONDARY", "OTHER"))[0]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    return [ds]


def dose_sr() -> list[Dataset]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesDescription = "Radiation Dose Information"
    ds.SeriesNumber = 997
    return [ds]


def head_ct_study() -> dict[str, list[Dataset]]:
    return {
        "localizer": ct(2, 0.6, "Topogram 0.6 T20s", 1,
                        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), orientation=CORONAL),
        "brain_5mm": ct(14, 5.0, "Head 5.0 H30s", 2, kernel="H30s"),
        "bone_thin": ct(40, 0.625, "Head 0.6 H70h bone", 3, kernel="H70h"),
        "brain_thin": ct(30, 1.0, "Head 1.0 Hr38", 4, kernel="Hr38"),
        "too_thin": ct(20, 0.3, "Head 0.3 Hr38", 5, kernel="Hr38"),
        "coronal_mpr": ct(12, 3.0, "Cor 3mm", 6, kernel="Hr38", orientation=CORONAL,
                          image_type=("DERIVED", "SECONDARY", "MPR")),
        "sagittal": ct(12, 3.0, "Sag 3mm", 7, kernel="Hr38", orientation=SAGITTAL),
        "dose_screen": dose_screen(),
        "dose_sr": dose_sr(),
        "cta": ct(20, 0.75, "CTA Head 0.75", 8, kernel="Hr38", ContrastBolusAgent="Omnipaque"),
    }


def _verdicts(selection):
    return {v.series_instance_uid: v for v in selection.verdicts}


def test_ich_chooses_thin_soft_axial_and_explains_every_series() -> None:
    study = head_ct_study()
    uid = {name: series[0].SeriesInstanceUID for name, series in study.items()}
    selection = select_ich([series_facts(s) for s in study.values()])
    assert selection.ok
    assert selection.series_for("ct").series_instance_uid == uid["brain_thin"]
    verdicts = _verdicts(selection)
    expected_words = {
        "localizer": "localizer",
        "too_thin": "outside 0.5-5",
        "coronal_mpr": "derived or secondary",
        "sagittal": "sagittal orientation",
        "dose_screen": "dose report",
        "dose_sr": "structured report",
        "cta": "contrast",
    }
    for name, word in expected_words.items():
        verdict = verdicts[uid[name]]
        assert not verdict.usable, name
        assert any(word in r for r in verdict.reasons), (name, verdict.reasons)
    assert verdicts[uid["brain_thin"]].role == "ct"
    assert "chosen" in verdicts[uid["brain_thin"]].reasons[0]
    for name in ("brain_5mm", "bone_thin"):
        assert verdicts[uid[name]].usable and verdicts[uid[name]].role is None
    assert "ranked 3" in verdicts[uid["bone_thin"]].reasons[0]
    record = json.loads(json.dumps(selection.record()))
    assert len(record["series"]) == len(study)
    assert record["chosen"][0]["series_instance_uid"] == uid["brain_thin"]


def test_ich_prefers_soft_kernel_over_thinner_bone() -> None:
    bone = ct(40, 0.625, "Head bone", 3, kernel="BONE")
    soft = ct(30, 5.0, "Head std", 2, kernel="STANDARD")
    selection = select_ich([series_facts(bone), series_facts(soft)])
    assert selection.series_for("ct").series_instance_uid == soft[0].SeriesInstanceUID


def test_ich_with_unknown_kernels_takes_the_thinnest() -> None:
    thick = ct(30, 5.0, "Head", 2, kernel="XYZ")
    thin = ct(20, 1.25, "Head", 3, kernel="XYZ")
    selection = select_ich([series_facts(thick), series_facts(thin)])
    assert selection.series_for("ct").series_instance_uid == thin[0].SeriesInstanceUID


def test_ich_without_usable_series_says_why() -> None:
    study = head_ct_study()
    selection = select_ich([series_facts(study[n]) for n in ("localizer", "cta", "dose_sr")])
    assert not selection.ok and selection.choices == ()
    assert all(v.reasons and not v.usable for v in selection.verdicts)


def test_ich_criteria_are_configurable() -> None:
    series = ct(30, 5.0, "Head", 2)
    strict = select_ich([series_facts(series)], IchCriteria(max_thickness_mm=3.0))
    assert not strict.ok and "outside 0.5-3" in strict.verdicts[0].reasons[0]


def test_study_facts_from_files_on_disk(tmp_path: Path) -> None:
    study = head_ct_study()
    paths = []
    for name in ("localizer", "brain_5mm", "coronal_mpr"):
        paths += write_series(study[name], str(tmp_path / name))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    facts = {f.series_instance_uid: f for f in study_facts(headers)}
    brain = facts[study["brain_5mm"][0].SeriesInstanceUID]
    assert brain.images == 14 and brain.plane == "AXIAL" and brain.kernel == "H30S"
    assert facts[study["coronal_mpr"][0].SeriesInstanceUID].plane == "CORONAL"
    chosen = select_ich(list(facts.values())).series_for("ct")
    assert chosen.series_instance_uid == study["brain_5mm"][0].SeriesInstanceUID


def test_enhanced_ct_counts_frames_and_reads_shared_orientation() -> None:
    ds = enhanced_series(np.zeros((24, 4, 4), np.int16), (2.0, 0.5, 0.5), identity=STUDY,
                         spec=SeriesSpec(series_description="Head 2mm"))
    facts = series_facts([ds])
    assert facts.images == 24 and facts.plane == "AXIAL"
    assert select_ich([facts]).ok


def test_oblique_beyond_the_limit_is_not_axial() -> None:
    tilted = {"row_direction": (1, 0, 0),
              "column_direction": (0, np.cos(np.radians(45)), -np.sin(np.radians(45)))}
    facts = series_facts(ct(30, 3.0, "Head", 2, orientation=tilted))
    assert facts.plane == "OBLIQUE"
    mild = {"row_direction": (1, 0, 0),
            "column_direction": (0, np.cos(np.radians(20)), -np.sin(np.radians(20)))}
    assert series_facts(ct(30, 3.0, "Head", 2, orientation=mild)).plane == "AXIAL"


def mr(b_values: dict[float, int], description: str, number: int, *,
       image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW")):
    spec = SeriesSpec(modality="MR", series_description=description, series_number=number,
                      image_type=image_type)
    out: list[Dataset] = []
    for b, n in b_values.items():
        spec_b = dataclasses.replace(spec, diffusion_b_value=b if b >= 0 else None)
        series = volume_series(np.zeros((n, 4, 4), np.uint16), (5.0, 1.0, 1.0), identity=STUDY,
                               spec=spec_b)
        for ds in series:
            ds.InstanceNumber += len(out)
        out += series
    return out


def test_stroke_takes_highest_b_instances_and_the_adc() -> None:
    dwi = mr({0: 20, 1000: 20}, "ep2d_diff_3scan_trace", 5)
    adc = mr({-1: 20}, "ep2d_diff_3scan_trace_ADC", 6,
             image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"))
    fa = mr({-1: 20}, "ep2d_diff_FA", 7, image_type=("DERIVED", "PRIMARY", "DIFFUSION", "FA"))
    flair = mr({-1: 20}, "t2_tirm_tra_dark-fluid", 3, image_type=("ORIGINAL", "PRIMARY", "M"))
    high_b = mr({0: 20, 3000: 20}, "dwi b3000", 8)
    selection = select_stroke([series_facts(s) for s in (flair, dwi, adc, fa, high_b)])
    assert selection.ok
    chosen_dwi = selection.series_for("dwi")
    assert chosen_dwi.series_instance_uid == dwi[0].SeriesInstanceUID
    b1000 = {ds.SOPInstanceUID for ds in dwi if ds.ImageComments == "b=1000"}
    assert set(chosen_dwi.sop_instance_uids) == b1000 and len(b1000) == 20
    assert selection.series_for("adc").series_instance_uid == adc[0].SeriesInstanceUID
    verdicts = _verdicts(selection)
    assert "FA" in verdicts[fa[0].SeriesInstanceUID].reasons[0]
    assert "no b-value" in verdicts[flair[0].SeriesInstanceUID].reasons[0]
    assert "3000" in verdicts[high_b[0].SeriesInstanceUID].reasons[0]


def test_stroke_reads_the_siemens_private_b_value() -> None:
    dwi = mr({-1: 10}, "diff", 5)
    for k, ds in enumerate(dwi):
        ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
        ds.add_new(0x0019100C, "IS", 1000 if k % 2 else 0)
    assert [b for b, _ in series_facts(dwi).b_values] == [0.0, 1000.0]


def test_stroke_without_adc_reads_the_b0_images_to_compute_it() -> None:
    dwi = mr({0: 10, 1000: 10}, "dwi", 5)
    selection = select_stroke([series_facts(dwi)])
    assert selection.ok
    b0 = {ds.SOPInstanceUID for ds in dwi if ds.ImageComments == "b=0"}
    assert set(selection.series_for("b0").sop_instance_uids) == b0 and len(b0) == 10
    assert "b=0 images for the ADC" in selection.verdicts[0].reasons[0]


def test_stroke_without_adc_takes_a_separate_b0_series() -> None:
    dwi = mr({1000: 10}, "ep2d_diff b1000", 5)
    b0 = mr({0: 10}, "ep2d_diff b0", 4)
    selection = select_stroke([series_facts(dwi), series_facts(b0)])
    assert selection.ok
    assert selection.series_for("b0").series_instance_uid == b0[0].SeriesInstanceUID
    verdicts = _verdicts(selection)
    assert verdicts[b0[0].SeriesInstanceUID].usable
    assert verdicts[b0[0].SeriesInstanceUID].role == "b0"


def test_stroke_without_adc_and_without_b0_is_not_selected() -> None:
    dwi = mr({1000: 10}, "dwi", 5)
    selection = select_stroke([series_facts(dwi)])
    assert not selection.ok
    assert "no DWI with an ADC map or b=0 images" in selection.verdicts[0].reasons[0]


def test_fracture_takes_presentation_radiographs_only() -> None:
    image = np.zeros((32, 32), np.uint16)
    hand = radiograph(image, (0.1, 0.1), identity=STUDY,
                      spec=SeriesSpec(modality="DX", body_part="HAND", series_number=1))
    raw = radiograph(image, (0.1, 0.1), identity=STUDY,
                     spec=SeriesSpec(modality="DX", body_part="HAND", series_number=2))
    raw.PresentationIntentType = "FOR PROCESSING"
    head = ct(30, 5.0, "Head", 3)
    selection = select_fracture([series_facts([hand]), series_facts([raw]), series_facts(head)])
    assert [c.series_instance_uid for c in selection.choices] == [hand.SeriesInstanceUID]
    verdicts = _verdicts(selection)
    assert "for processing" in verdicts[raw.SeriesInstanceUID].reasons[0]
    assert "not CR/DX" in verdicts[head[0].SeriesInstanceUID].reasons[0]


# --- odd but real headers ----------------------------------------------------------------------

_STILL_CHOSEN = {
    "no-series-description", "no-image-type", "slice-thickness-empty", "slice-thickness-word",
    "pixel-spacing-one-value", "pixel-spacing-words", "instance-number-word",
    "series-number-word", "no-image-position", "image-position-words", "frames-word",
    "no-rows", "rescale-slope-word", "spacing-between-slices-word",
}
_NOT_USABLE = {
    "no-modality": "modality absent, not CT",
    "orientation-five-values": "unknown orientation, not axial",
    "orientation-words": "unknown orientation, not axial",
    "no-sop-instance-uid": "not usable: 12 instance(s) without SOP Instance UID",
}


def test_every_odd_header_has_an_expected_verdict() -> None:
    assert _STILL_CHOSEN | set(_NOT_USABLE) == set(ODD_HEADERS)


@pytest.mark.parametrize("name", sorted(ODD_HEADERS))
def test_odd_headers_get_a_verdict_not_an_exception(name: str, tmp_path: Path) -> None:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in odd_series(tmp_path, name)]
    facts = study_facts(headers)
    for select in (select_ich, select_stroke, select_fracture):
        selection = select(facts)
        assert len(selection.verdicts) == 1 and selection.verdicts[0].reasons
        json.dumps(selection.record())
    ich = select_ich(facts)
    if name in _STILL_CHOSEN:
        assert ich.ok, ich.verdicts[0].reasons
    else:
        assert not ich.ok
        assert _NOT_USABLE[name] in ich.verdicts[0].reasons
    if name in ("slice-thickness-empty", "slice-thickness-word"):
        assert facts[0].slice_thickness is None
