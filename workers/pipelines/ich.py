"""The intracranial haemorrhage pipeline: the axial non-contrast head CT, read into a volume,
through the ICH model (the demo model by default; `model: blast-ct` selects the BLAST-CT
segmentation ensemble), reported as SR (probabilities per subtype, key slices), SEG when the
model segments, KOS, FHIR and HL7; a positive critical class raises the priority signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.selection import select_ich
from inference.types import Prediction
from workers.pipelines.definition import PipelineDefinition, Priority

if TYPE_CHECKING:
    from workers.pipelines.runner import StudyPipeline

_HEAD = r"(?i).*\b(head|brain|skull|cerebr\w*|cran\w*|neuro)\b.*"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def conclusion(prediction: Prediction, _options: Mapping[str, Any] | None = None) -> str:
    positive = [prediction.result(key).name for key in prediction.positive]
    if not positive:
        return "No intracranial haemorrhage detected by the AI model. AI-generated, not verified."
    return ("AI suspects intracranial haemorrhage: " + ", ".join(positive)
            + ". AI-generated, not verified; for prioritisation only.")


ICH = PipelineDefinition(
    name="ich",
    report=EncodePipeline.ICH,
    modality="CT",
    task="ich-classification",
    default_model="ich-demo",
    select=select_ich,
    roles=("ct",),
    procedure=dcodes.CT_HEAD_WO_CONTRAST,
    finding_site=dcodes.BRAIN,
    seg_property_type=dcodes.HEMORRHAGE_MORPHOLOGY,
    target_label="head CT",
    priority=Priority(signal="critical: ICH suspected",
                      classes=("any", "intraparenchymal", "extra_axial", "intraventricular")),
    conclusion=conclusion,
    rule={"name": "ich-ct-head", "pipeline": "ich", "priority": "stat", "quiet_period_s": 15,
          "when": {"all": [
              {"tag": "Modality", "equals": "CT"},
              {"tag": "SOPClassUID", "contains_any": [CT_IMAGE, ENHANCED_CT_IMAGE]},
              {"tag": "ImageType", "contains": "ORIGINAL"},
              {"any": [{"tag": "BodyPartExamined", "in": ["HEAD", "BRAIN", "SKULL"]},
                       {"tag": "SeriesDescription", "matches": _HEAD},
                       {"tag": "ProtocolName", "matches": _HEAD}]},
              {"tag": "InstanceCount", "min": 10},
          ]}},
)


def IchPipeline(device: str, options: dict[str, Any]) -> StudyPipeline:  # noqa: N802 - the
    # configured factory name (`workers.pipelines.ich:IchPipeline`) predates the runner
    """The ICH definition on the generic runner."""
    from workers.pipelines.runner import StudyPipeline  # torch: only where a model runs

    return StudyPipeline(ICH, device, options)
