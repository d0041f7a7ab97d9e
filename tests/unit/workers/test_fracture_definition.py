"""The fracture definition's parts that need no model: the radiograph selector, the mapping of
detections onto SR box findings and FHIR Observations, the wording and the priority rule."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import BoxFinding, ProbabilityFinding
from dicom_node.selection import series_facts
from dicom_node.synth import SeriesSpec, StudyIdentity, radiograph
from inference.types import ClassResult, Code, Detection, KeySlice, ModelInfo, Prediction
from workers.pipelines import mapping
from workers.pipelines.definition import Priority
from workers.pipelines.fracture import FRACTURE, conclusion, select_fracture
from workers.pipelines.stroke import conclusion as stroke_conclusion

STUDY = StudyIdentity()
FRACTURE_CODE = Code("72704001", "SCT", "Fracture")


def _dx(number: int, intent: str = "FOR PRESENTATION", body_part: str = "WRIST"):
    ds = radiograph(np.zeros((32, 32), np.uint16), (0.1, 0.1), identity=STUDY,
                    spec=SeriesSpec(modality="DX", body_part=body_part, series_number=number))
    ds.PresentationIntentType = intent
    return ds


def _prediction(probability: float, detections: tuple[Detection, ...],
                images: tuple[str, ...] = ("1.2.3.1", "1.2.3.2")) -> Prediction:
    key = KeySlice(index=0, slice_id=images[0], probability=probability)
    result = ClassResult(key="fracture", name="Fracture", code=FRACTURE_CODE,
                         probability=probability, threshold=0.5, positive=probability >= 0.5,
                         key_slice=key)
    info = ModelInfo("fracture-demo", "0.1.0", "demo", "0" * 64, "InferNode", True)
    return Prediction(pipeline="fracture", model=info, classes=(result,),
                      slice_probabilities=np.array([[probability], [0.1]]), slice_ids=images,
                      detections=detections)


def test_selector_reads_processing_images_only_without_a_presentation_copy() -> None:
    raw = _dx(2, "FOR PROCESSING")
    alone = select_fracture([series_facts([raw])])
    assert [c.series_instance_uid for c in alone.choices] == [raw.SeriesInstanceUID]
    assert "for processing" in alone.verdicts[0].reasons[0]

    shown = _dx(1)
    both = select_fracture([series_facts([shown]), series_facts([raw])])
    assert [c.series_instance_uid for c in both.choices] == [shown.SeriesInstanceUID]
    refused = next(v for v in both.verdicts if v.series_instance_uid == raw.SeriesInstanceUID)
    assert not refused.usable and "'for processing' copy" in refused.reasons[0]


def test_selector_refuses_captures_and_other_modalities_with_reasons() -> None:
    capture = _dx(3)
    capture.SOPClassUID = SecondaryCaptureImageStorage
    capture.ImageType = ["DERIVED", "SECONDARY"]
    ct = _dx(4)
    ct.Modality = "CT"
    selection = select_fracture([series_facts([capture]), series_facts([ct])])
    assert not selection.ok
    reasons = {v.series_instance_uid: " ".join(v.reasons) for v in selection.verdicts}
    assert "secondary" in reasons[capture.SeriesInstanceUID]
    assert "not CR/DX" in reasons[ct.SeriesInstanceUID]


def test_boxes_become_planar_findings_on_their_image_inside_its_bounds() -> None:
    detections = (Detection("1.2.3.2", (90.0, 10.0, 140.0, 60.0), 0.9, "fracture"),
                  Detection("1.2.3.1", (5.0, 5.0, 20.0, 25.0), 0.7, "fracture"))
    facts = {"1.2.3.1": mapping.ImageFacts(64, 64, dcodes.body_part_site("WRIST"),
                                           dcodes.LEFT),
             "1.2.3.2": mapping.ImageFacts(100, 120, dcodes.body_part_site("FOREARM"))}
    found = mapping.radiograph_findings(_prediction(0.92, detections), facts, dcodes.BONE)
    image_level = [f for f in found if isinstance(f, ProbabilityFinding)]
    boxes = [f for f in found if isinstance(f, BoxFinding)]
    assert len(image_level) == 1 and image_level[0].key_sop_instance_uids == ("1.2.3.1",)
    assert image_level[0].finding_site.meaning == "Wrist joint"
    assert [b.label for b in boxes] == ["fracture-1", "fracture-2"]
    # the first box ran past the 120-column image: kept inside it
    assert boxes[0].box.column_max == 120.0 and boxes[0].finding_site.meaning == "Forearm"
    assert boxes[1].laterality == dcodes.LEFT and boxes[1].finding.value == "72704001"
    fhir = mapping.fhir_detection_findings(_prediction(0.92, detections), facts, dcodes.BONE,
                                           ("fracture",))
    assert fhir[0].critical and fhir[0].laterality is not None
    assert [f.probability for f in fhir[1:]] == [0.9, 0.7]
    assert fhir[2].laterality is not None and fhir[2].laterality.display == "Left"
    assert fhir[1].body_site is not None and fhir[1].body_site.display == "Forearm"


def test_a_negative_study_has_no_key_image_and_says_no_fracture() -> None:
    prediction = _prediction(0.1, ())
    facts = {"1.2.3.1": mapping.ImageFacts(64, 64, dcodes.BONE)}
    (finding,) = mapping.radiograph_findings(prediction, facts, dcodes.BONE)
    assert isinstance(finding, ProbabilityFinding) and not finding.positive
    assert finding.key_sop_instance_uids == ()
    assert conclusion(prediction).startswith("No fracture detected")


def test_wording_counts_regions_and_images() -> None:
    detections = (Detection("1.2.3.1", (1.0, 1.0, 9.0, 9.0), 0.8, "fracture"),
                  Detection("1.2.3.1", (20.0, 20.0, 30.0, 30.0), 0.6, "fracture"))
    text = conclusion(_prediction(0.8, detections))
    assert "2 region(s) marked on 1 image(s)" in text and "0.80" in text


@pytest.mark.parametrize(("probability", "floor", "raised"), [
    (0.8, None, True), (0.4, None, False), (0.8, 0.9, False), (0.95, 0.9, True)])
def test_priority_follows_the_configured_probability(probability: float, floor: float | None,
                                                     raised: bool) -> None:
    priority = FRACTURE.priority
    floors = {"fracture": floor} if floor is not None else None
    assert priority.raised(_prediction(probability, ()), probability=floors) is raised


def test_priority_without_critical_classes_is_never_raised_by_a_class() -> None:
    assert not Priority(signal="x").raised(_prediction(0.99, ()))


def test_body_parts_map_to_sites_and_unknown_ones_to_none() -> None:
    assert dcodes.body_part_site("hand") == dcodes.body_part_site("HAND")
    assert dcodes.body_part_site("ANKLE").meaning == "Ankle joint"
    assert dcodes.body_part_site("ABDOMEN") is None and dcodes.body_part_site(None) is None


def test_stroke_large_core_wording_is_configurable() -> None:
    from inference.types import SegmentMask

    core = np.ones((2, 10, 10), np.uint8)
    mask = SegmentMask("infarct", "Infarct", Code("55641003", "SCT", "Infarct"), core, 40.0,
                       200)
    info = ModelInfo("stroke", "0.1.0", "stroke", "0" * 64, "InferNode", True)
    prediction = Prediction(pipeline="stroke", model=info, classes=(),
                            slice_probabilities=np.zeros((0, 0)), slice_ids=(), masks=(mask,))
    assert "Large core" not in stroke_conclusion(prediction)
    assert "Large core (at least 30 mL)" in stroke_conclusion(prediction, {"large_core_ml": 30})
