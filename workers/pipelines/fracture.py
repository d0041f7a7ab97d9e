"""The fracture pipeline: CR/DX radiographs of the limbs, each image through the fracture
detection model (the phantom-trained demo by default), reported as a TID 1500 SR with one
planar group per detected box (a closed POLYLINE on its image), the image-level finding, a KOS
of the images with detections, FHIR Observations with body site and laterality, and HL7; a
fracture at or above the configured probability raises the priority signal.

Radiographs are not volumes: the runner reads each chosen image on its stored pixel grid
(`dicom_node.radiograph.read_radiograph`) and the model answers per image, so a box is in the
pixel coordinates of the image it names. The series selector lives here, with the definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.selection import Choice, Selection, SeriesFacts, Verdict, non_image_reasons
from inference.types import Prediction
from workers.config import CR_IMAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING
from workers.pipelines.definition import PipelineDefinition, Priority

if TYPE_CHECKING:
    from workers.pipelines.runner import StudyPipeline

_RADIOGRAPH_CLASSES = {CR_IMAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING}


def _reasons(f: SeriesFacts) -> list[str]:
    reasons = [] if f.modality in ("CR", "DX") else [
        f"modality {f.modality or 'absent'}, not CR/DX"]
    if f.modality in ("CR", "DX") and not _RADIOGRAPH_CLASSES & set(f.sop_class_uids):
        reasons.append("not a CR/DX image object (e.g. secondary capture)")
    # a processed radiograph is still the acquisition (DERIVED is common on CR); a secondary
    # image (a capture, a screenshot) is not
    reasons += [r for r in non_image_reasons(f) if not r.startswith("derived")]
    if "SECONDARY" in f.image_type[1:2]:
        reasons.append("secondary image (capture or processed copy)")
    return reasons


def select_fracture(facts: Sequence[SeriesFacts]) -> Selection:
    """Every CR/DX series of images, each as a `radiograph` choice.

    "For processing" images (raw detector values) are read only when the study holds no
    "for presentation" image: when both are present the processing copy is a duplicate of the
    presentation one and is left out, with that reason. Scouts, captures and non-image objects
    are never read."""
    usable: list[SeriesFacts] = []
    verdicts: dict[str, Verdict] = {}
    for f in facts:
        reasons = _reasons(f)
        if reasons:
            verdicts[f.series_instance_uid] = Verdict(f.series_instance_uid, False,
                                                      tuple(reasons))
        else:
            usable.append(f)
    presentation = [f for f in usable if f.presentation_intent != "FOR PROCESSING"]
    choices = []
    for f in usable:
        if f.presentation_intent == "FOR PROCESSING" and presentation:
            verdicts[f.series_instance_uid] = Verdict(f.series_instance_uid, False, (
                "'for processing' copy; the study's 'for presentation' images are read",))
            continue
        choices.append(Choice("radiograph", f.series_instance_uid))
        intent = f.presentation_intent.lower() or "unspecified intent"
        verdicts[f.series_instance_uid] = Verdict(f.series_instance_uid, True, (
            f"chosen: {f.modality} radiograph ({intent}), {f.images} image(s)",), "radiograph")
    return Selection("fracture", tuple(choices),
                     tuple(verdicts[f.series_instance_uid] for f in facts
                           if f.series_instance_uid in verdicts))


def conclusion(prediction: Prediction, _options: Mapping[str, Any] | None = None) -> str:
    """The report sentence: how many boxes on how many images, or no fracture."""
    fracture = next((c for c in prediction.classes if c.key == "fracture"),
                    prediction.classes[0] if prediction.classes else None)
    if fracture is None or not fracture.positive:
        return "No fracture detected by the AI model. AI-generated, not verified."
    images = {d.image_id for d in prediction.detections}
    boxes = len(prediction.detections)
    where = (f" ({boxes} region(s) marked on {len(images)} image(s))" if boxes else "")
    return (f"AI suspects a fracture{where}, probability {fracture.probability:.2f}. "
            "AI-generated, not verified; for prioritisation only.")


FRACTURE_RULE: dict[str, Any] = {
    "name": "fracture-radiograph", "pipeline": "fracture", "priority": "routine",
    "quiet_period_s": 10, "when": {"all": [
        {"tag": "Modality", "in": ["CR", "DX"]},
        {"tag": "SOPClassUID", "contains_any": sorted(_RADIOGRAPH_CLASSES)},
    ]}}

FRACTURE = PipelineDefinition(
    name="fracture",
    report=EncodePipeline.FRACTURE,
    modality="DX",
    task="fracture-detection",
    default_model="fracture-demo",
    select=select_fracture,
    roles=("radiograph",),
    procedure=dcodes.XR_UNSPECIFIED_BODY_REGION,
    finding_site=dcodes.BONE,
    seg_property_type=dcodes.FRACTURE_MORPHOLOGY,
    target_label="radiograph",
    priority=Priority(signal="fracture suspected", classes=("fracture",)),
    conclusion=conclusion,
    rule=FRACTURE_RULE,
    input="radiographs",
)


def FracturePipeline(device: str, options: dict[str, Any]) -> StudyPipeline:  # noqa: N802
    """The fracture definition on the generic runner
    (`workers.pipelines.fracture:FracturePipeline`)."""
    from workers.pipelines.runner import StudyPipeline  # torch: only where a model runs

    return StudyPipeline(FRACTURE, device, options)
