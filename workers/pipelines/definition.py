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
from typing import Any, Literal

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.selection import Selection, SeriesFacts
from inference.types import Prediction

Selector = Callable[[Sequence[SeriesFacts]], Selection]
"""Pure: the series facts of a study in, the chosen series (by role) with reasons out."""

Wording = Callable[[Prediction, Mapping[str, Any]], str]
"""The report's conclusion sentence for a prediction and the pipeline's options (no PHI, no
UIDs)."""

ModelOptions = Callable[[Sequence[SeriesFacts], Selection], Mapping[str, Any]]
"""Keyword arguments for the model taken from the chosen series (e.g. the DWI's b-value)."""


def no_model_options(_facts: Sequence[SeriesFacts], _selection: Selection) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Priority:
    """When a study raises the worklist priority signal, and how the signal reads.

    `classes`: class keys whose positive result is critical. `probability`: a class key ->
    the study probability at or above which that class is critical (without an entry, the
    card's own threshold: any positive result). `mask_volume_ml`: a mask key -> volume in mL at
    or above which the study is critical (e.g. an infarct core over 1 mL).
    """

    signal: str
    classes: tuple[str, ...] = ()
    mask_volume_ml: Mapping[str, float] = field(default_factory=dict)
    probability: Mapping[str, float] = field(default_factory=dict)

    def raised(self, prediction: Prediction, classes: Sequence[str] | None = None,
               volumes: Mapping[str, float] | None = None,
               probability: Mapping[str, float] | None = None) -> bool:
        """True when a critical class is positive (at or above its configured probability,
        when one is set) or a mask reaches its volume threshold."""
        keys = tuple(classes) if classes is not None else self.classes
        limits = dict(volumes) if volumes is not None else dict(self.mask_volume_ml)
        floors = dict(probability) if probability is not None else dict(self.probability)
        for result in prediction.classes:
            if result.positive and result.key in keys and (
                    result.probability >= floors.get(result.key, 0.0)):
                return True
        return any(m.key in limits and m.volume_ml >= limits[m.key] for m in prediction.masks)


@dataclass(frozen=True)
class PipelineDefinition:
    """One clinical pipeline, as data. `roles` are the volume roles its selector chooses and
    its model reads (the first is the primary one: the SEG and key images reference it).
    `rule` is the default routing rule (a `workers.rules.RoutingRule` as a mapping).
    `input` says what the model reads: `volumes` (one volume per role on one grid, through
    `predict_input`) or `radiographs` (each chosen image on its own pixel grid, through
    `predict_images`)."""

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
    input: Literal["volumes", "radiographs"] = "volumes"

    @property
    def primary_role(self) -> str:
        return self.roles[0]
