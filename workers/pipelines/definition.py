"""A pipeline is one frozen definition (DESIGN.md "A pipeline is one definition").

Everything that distinguishes the ICH pipeline from the stroke pipeline lives in one
`PipelineDefinition` in `workers/pipelines/<name>.py`: which series it reads (its selector and
the volume roles), which model task it runs, how its report is coded (procedure, finding site,
SEG property type) and worded, which findings raise the priority signal, and its default
routing rule. `workers.pipelines.runner.StudyPipeline` executes any definition, so SR, SEG,
FHIR, HL7 and the not-analysed path behave the same for all pipelines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.selection import Selection, SeriesFacts
from inference.types import Prediction

Selector = Callable[[Sequence[SeriesFacts]], Selection]
"""Pure: the series facts of a study in, the chosen series (by role) with reasons out."""

Wording = Callable[[Prediction], str]
"""The report's conclusion sentence for a prediction (no PHI, no UIDs)."""

ModelOptions = Callable[[Sequence[SeriesFacts], Selection], Mapping[str, Any]]
"""Keyword arguments for the model taken from the chosen series (e.g. the DWI's b-value)."""


def no_model_options(_facts: Sequence[SeriesFacts], _selection: Selection) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Priority:
    """When a study raises the worklist priority signal, and how the signal reads.

    `classes`: class keys whose positive result is critical. `mask_volume_ml`: a mask key ->
    volume in mL at or above which the study is critical (e.g. an infarct core over 1 mL).
    """

    signal: str
    classes: tuple[str, ...] = ()
    mask_volume_ml: Mapping[str, float] = field(default_factory=dict)

    def raised(self, prediction: Prediction, classes: Sequence[str] | None = None,
               volumes: Mapping[str, float] | None = None) -> bool:
        """True when a critical class is positive or a mask reaches its volume threshold."""
        keys = tuple(classes) if classes is not None else self.classes
        limits = dict(volumes) if volumes is not None else dict(self.mask_volume_ml)
        if any(k in keys for k in prediction.positive):
            return True
        return any(m.key in limits and m.volume_ml >= limits[m.key] for m in prediction.masks)


@dataclass(frozen=True)
class PipelineDefinition:
    """One clinical pipeline, as data. `roles` are the volume roles its selector chooses and
    its model reads (the first is the primary one: the SEG and key images reference it).
    `rule` is the default routing rule (a `workers.rules.RoutingRule` as a mapping)."""

    name: str
    report: EncodePipeline
    modality: str
    task: str
    default_model: str
    select: Selector
    roles: tuple[str, ...]
    procedure: dcodes.Coded
    finding_site: dcodes.Coded
    seg_property_type: dcodes.Coded
    target_label: str
    priority: Priority
    conclusion: Wording
    rule: Mapping[str, Any]
    seg_property_category: dcodes.Coded = dcodes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE
    model_options: ModelOptions = no_model_options

    @property
    def primary_role(self) -> str:
        return self.roles[0]
