"""The acute stroke pipeline: MR brain diffusion (the highest-b DWI, about b=1000, with its ADC
map, or with the b=0 images to compute one), through the stroke model (the ADC-threshold
ischaemic core by default), reported as SEG (infarct), SR with the core volume, KOS, FHIR and
HL7; a core at or above the configured volume (default 1 mL) raises the priority signal.

The series selector lives here, with the definition: it is a pure function of the study's
series facts (dicom_node.selection.study_facts), and every series gets its reasons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.selection import Choice, Selection, SeriesFacts, Verdict
from inference.types import Prediction
from workers.pipelines.definition import PipelineDefinition, Priority

if TYPE_CHECKING:
    from workers.pipelines.runner import StudyPipeline

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
_ADC_TEXT = re.compile(r"(\bADC\b|APPARENT DIFFUSION)")
_LOCALIZER = re.compile(r"\b(SCOUT|LOCALI[SZ]ER|SURVEY|3.?PLANE)\b")
_HEAD = r"(?i).*\b(head|brain|skull|cerebr\w*|cran\w*|neuro)\b.*"
_DIFFUSION = r"(?i).*(dwi|diff|adc|trace|ep2d_diff|b ?1000).*"

LARGE_CORE_ML = 70.0
"""A core this large is worded as a large core (the usual late-window exclusion volume)."""


@dataclass(frozen=True)
class StrokeCriteria:
    """Accepted highest b-value (s/mm²) of the DWI, its target, the largest b counted as b=0,
    and diffusion derivatives that are neither DWI nor ADC."""

    min_b: float = 500.0
    max_b: float = 2000.0
    target_b: float = 1000.0
    max_b0: float = 50.0
    excluded_types: tuple[str, ...] = ("FA", "EXP", "EADC", "TENSOR", "TRACEW_EXP")


def _is_adc(f: SeriesFacts) -> bool:
    return "ADC" in f.image_type or bool(_ADC_TEXT.search(f.text))


def _reasons(f: SeriesFacts, c: StrokeCriteria) -> list[str]:
    reasons = [] if f.modality == "MR" else [f"modality {f.modality or 'absent'}, not MR"]
    if f.modality == "MR" and not {MR_IMAGE, ENHANCED_MR_IMAGE} & set(f.sop_class_uids):
        reasons.append("not an MR image object")
    if "LOCALIZER" in f.image_type or _LOCALIZER.search(f.text):
        reasons.append("localizer / scout")
    if any(not uid for uid in f.sop_instance_uids):
        reasons.append("instance(s) without SOP Instance UID")
    if f.plane not in ("AXIAL", "UNKNOWN"):
        reasons.append(f"{f.plane.lower()} orientation, not axial")
    excluded = sorted(x for x in c.excluded_types if x in f.image_type)
    if excluded and not reasons:
        reasons.append(f"diffusion derivative ({', '.join(excluded)}), not DWI or ADC")
    return reasons


def _top_b(f: SeriesFacts) -> float | None:
    return f.b_values[-1][0] if f.b_values else None


def select_stroke(facts: Sequence[SeriesFacts],
                  criteria: StrokeCriteria | None = None) -> Selection:
    """The DWI instances at the highest b-value (about 1000), with the ADC map when the study
    has one, else the b=0 images (of the DWI series, or a b=0 series of their own with as many
    images) from which the model computes the ADC."""
    c = criteria or StrokeCriteria()
    reasons = {f.series_instance_uid: _reasons(f, c) for f in facts}
    dwi: list[SeriesFacts] = []
    adc: list[SeriesFacts] = []
    b0_only: list[SeriesFacts] = []
    for f in facts:
        own = reasons[f.series_instance_uid]
        if own:
            continue
        top = _top_b(f)
        if _is_adc(f):
            adc.append(f)
        elif top is None:
            own.append("neither diffusion-weighted (no b-value found) nor ADC")
        elif top <= c.max_b0:
            b0_only.append(f)  # a b=0 series of its own (some scanners split b-values)
            own.append(f"b=0 images only (b={top:g})")
        elif not c.min_b <= top <= c.max_b:
            own.append(f"highest b-value {top:g} outside {c.min_b:g}-{c.max_b:g}")
        else:
            dwi.append(f)
    dwi.sort(key=lambda f: (abs((_top_b(f) or 0) - c.target_b), -f.images, f.series_number))
    choices: list[Choice] = []
    if dwi:
        chosen = dwi[0]
        top_b, top_uids = chosen.b_values[-1]
        top_frames = chosen.frames_at(top_b)
        # images (or frames of a multi-frame image) at the top b: what the ADC must match
        slices = len(top_frames) or len(top_uids)
        choices.append(Choice("dwi", chosen.series_instance_uid, top_uids, top_frames))
        adc.sort(key=lambda f: (f.images != slices, f.series_number))
        b0 = [(b, uids) for b, uids in chosen.b_values if b <= c.max_b0]
        separate_b0 = [f for f in b0_only if f.images == slices]
        if adc:
            choices.append(Choice("adc", adc[0].series_instance_uid))
        elif b0 and (len(chosen.frames_at(b0[0][0])) or len(b0[0][1])) == slices:
            choices.append(Choice("b0", chosen.series_instance_uid, b0[0][1],
                                  chosen.frames_at(b0[0][0])))
        elif separate_b0:
            chosen_b0 = min(separate_b0, key=lambda f: f.series_number)
            choices.append(Choice("b0", chosen_b0.series_instance_uid))
            reasons[chosen_b0.series_instance_uid] = []
    if len(choices) < 2:
        choices = []  # the DWI is read with an ADC (given or computable) or not at all
    dwi_uid = choices[0].series_instance_uid if choices else None
    roles = {ch.series_instance_uid: ch.role for ch in choices
             if ch.role != "b0" or ch.series_instance_uid != dwi_uid}
    verdicts = []
    for f in facts:
        own = reasons[f.series_instance_uid]
        role = roles.get(f.series_instance_uid)
        text: tuple[str, ...]
        if role == "dwi":
            b0_note = "; b=0 images for the ADC" if any(ch.role == "b0" for ch in choices) else ""
            count = len(choices[0].frames) or len(choices[0].sop_instance_uids)
            text = (f"chosen as DWI: {count} images at b={_top_b(f):g}{b0_note}",)
        elif role == "adc":
            text = ("chosen as ADC map",)
        elif role == "b0":
            text = ("chosen as the b=0 images for the ADC",)
        elif own:
            text = tuple(own)
        else:
            text = ("usable but another series was preferred" if choices else
                    "no DWI with an ADC map or b=0 images in the study",)
        verdicts.append(Verdict(f.series_instance_uid, not own, text, role))
    return Selection("stroke", tuple(choices), tuple(verdicts))


def model_options(facts: Sequence[SeriesFacts], selection: Selection) -> dict[str, Any]:
    """The DWI's b-value, for an ADC computed from the b=0 and DWI images."""
    dwi = selection.series_for("dwi")
    chosen = next((f for f in facts if dwi and f.series_instance_uid == dwi.series_instance_uid),
                  None)
    top = _top_b(chosen) if chosen is not None else None
    return {"b_value": top} if top is not None and selection.series_for("b0") else {}


def conclusion(prediction: Prediction, options: Mapping[str, Any] | None = None) -> str:
    """The report sentence: the core volume, lesion count and side, or no core; a core at or
    above `large_core_ml` (option; default 70 mL) is worded as a large core."""
    core = next((m for m in prediction.masks if m.key == "infarct"), None)
    if core is None or core.voxel_count == 0:
        return ("No acute infarct core (ADC restriction) detected by the AI model. "
                "AI-generated, not verified.")
    lesions = getattr(prediction, "lesions", ())
    side = getattr(prediction, "laterality", None)
    parts = [f"AI detected an acute infarct core of {core.volume_ml:.1f} mL"]
    if lesions:
        largest = max(lesion.volume_ml for lesion in lesions)
        parts.append(f" in {len(lesions)} lesion(s), the largest {largest:.1f} mL")
    if side:
        parts.append(f", {side} hemisphere" if side != "bilateral" else ", both hemispheres")
    text = "".join(parts) + "."
    large = float((options or {}).get("large_core_ml", LARGE_CORE_ML))
    if core.volume_ml >= large:
        text += f" Large core (at least {large:g} mL)."
    return text + " AI-generated, not verified; for prioritisation only."


STROKE = PipelineDefinition(
    name="stroke",
    report=EncodePipeline.STROKE,
    modality="MR",
    task="stroke-segmentation",
    default_model="stroke-adc-threshold",
    select=select_stroke,
    roles=("dwi", "adc", "b0"),
    procedure=dcodes.MR_BRAIN_WO_CONTRAST,
    finding_site=dcodes.BRAIN,
    seg_property_type=dcodes.INFARCT_MORPHOLOGY,
    target_label="MR diffusion",
    priority=Priority(signal="critical: acute infarct suspected",
                      mask_volume_ml={"infarct": 1.0}),
    conclusion=conclusion,
    model_options=model_options,
    rule={"name": "stroke-mr-diffusion", "pipeline": "stroke", "priority": "stat",
          "quiet_period_s": 20, "when": {"all": [
              {"tag": "Modality", "equals": "MR"},
              {"any": [{"tag": "BodyPartExamined", "in": ["HEAD", "BRAIN"]},
                       {"tag": "SeriesDescription", "matches": _HEAD},
                       {"tag": "ProtocolName", "matches": _HEAD}]},
              {"any": [{"tag": "ImageType", "contains_any": ["DIFFUSION", "ADC", "TRACEW"]},
                       {"tag": "SeriesDescription", "matches": _DIFFUSION},
                       {"tag": "ProtocolName", "matches": _DIFFUSION}]},
          ]}},
)


def StrokePipeline(device: str, options: dict[str, Any]) -> StudyPipeline:  # noqa: N802
    """The stroke definition on the generic runner (`workers.pipelines.stroke:StrokePipeline`)."""
    from workers.pipelines.runner import StudyPipeline  # torch: only where a model runs

    return StudyPipeline(STROKE, device, options)
