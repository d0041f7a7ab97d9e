"""Translations between the leaf packages' plain types: model output -> DICOM findings and
FHIR/HL7 findings; DICOM headers -> the FHIR study facts. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import Box, BoxFinding, Lesion, MaskFinding, ProbabilityFinding
from dicom_node.index.values import int_value, normalise_date
from hl7_fhir import codes as fcodes
from hl7_fhir.types import Coded as FhirCoded
from hl7_fhir.types import Finding as FhirFinding
from hl7_fhir.types import InstanceFacts, SeriesFacts, StudyFacts
from inference.types import Code, Prediction

_SYSTEMS = {"SCT": fcodes.SNOMED, "LN": fcodes.LOINC, "DCM": "http://dicom.nema.org/resources/ontology/DCM"}


def dicom_code(code: Code) -> dcodes.Coded:
    return dcodes.Coded(code.value, code.scheme, code.meaning, "model card")


def fhir_code(code: dcodes.Coded | Code) -> FhirCoded:
    value = code.value
    scheme = code.scheme
    meaning = code.meaning
    return FhirCoded(code=value, display=meaning, system=_SYSTEMS.get(scheme, scheme))


def dicom_findings(
    prediction: Prediction, site: dcodes.Coded, voxel_volume_mm3: float,
    property_type: dcodes.Coded = dcodes.HEMORRHAGE_MORPHOLOGY,
    frame_numbers: Sequence[int | None] = (),
) -> list[ProbabilityFinding | MaskFinding]:
    """One probability finding per class (key slice when positive), one mask finding per mask
    with voxels (SEG property type `property_type`, the pipeline definition's).
    `frame_numbers` gives, per volume slice, its 1-based frame in a multi-frame source image
    (None for single-frame images), so a lesion's key image can name its frame."""
    found: list[ProbabilityFinding | MaskFinding] = []
    for result in prediction.classes:
        key = (result.key_slice.slice_id,) if result.positive and result.key_slice else ()
        found.append(ProbabilityFinding(
            label=result.name, finding=dicom_code(result.code), finding_site=site,
            probability=float(result.probability), threshold=float(result.threshold),
            positive=bool(result.positive), key_sop_instance_uids=key,
        ))
    # lesions and laterality describe the union mask of a single-mask segmentation (stroke)
    single = len(prediction.masks) == 1
    for mask in prediction.masks:
        if not mask.mask.any():
            continue
        found.append(MaskFinding(
            label=f"{mask.name} (segmented)", finding=dicom_code(mask.code),
            property_type=property_type, finding_site=site,
            mask=mask.mask.astype(bool), voxel_volume_mm3=voxel_volume_mm3,
            laterality=_side(prediction.laterality) if single else None,
            lesions=_lesions(prediction, frame_numbers) if single else (),
        ))
    return found


def _side(word: str | None) -> dcodes.Coded | None:
    return dcodes.LATERALITY.get(word) if word else None


def _lesions(prediction: Prediction, frame_numbers: Sequence[int | None] = ()
             ) -> tuple[Lesion, ...]:
    """The prediction's lesions, largest first, each with the image (and, in a multi-frame
    image, the frame) where it is largest."""
    out = []
    for lesion in prediction.lesions:
        k = lesion.slice_index_of_max_area
        key = prediction.slice_ids[k] if 0 <= k < len(prediction.slice_ids) else None
        frame = frame_numbers[k] if 0 <= k < len(frame_numbers) else None
        out.append(Lesion(volume_ml=float(lesion.volume_ml), laterality=_side(lesion.hemisphere),
                          key_sop_instance_uid=key, key_frame_number=frame))
    return tuple(out)


def fhir_findings(prediction: Prediction, site: dcodes.Coded,
                  critical_keys: Sequence[str]) -> list[FhirFinding]:
    findings = [
        FhirFinding(code=fhir_code(r.code), body_site=fhir_code(site), presence=r.positive,
                    probability=round(float(r.probability), 4),
                    critical=bool(r.positive and r.key in critical_keys))
        for r in prediction.classes
    ]
    single = len(prediction.masks) == 1
    side = _side(prediction.laterality) if single else None
    findings += [
        FhirFinding(code=fhir_code(m.code), body_site=fhir_code(site), presence=True,
                    volume_ml=round(float(m.volume_ml), 3),
                    lesion_count=len(prediction.lesions) if single and prediction.lesions
                    else None,
                    laterality=fhir_code(side) if side is not None else None)
        for m in prediction.masks if m.voxel_count > 0
    ]
    return findings


@dataclass(frozen=True)
class ImageFacts:
    """What the reports say about one radiograph besides its detections: its size (boxes are
    kept inside it), its anatomic site and the imaged side."""

    rows: int
    columns: int
    site: dcodes.Coded
    laterality: dcodes.Coded | None = None


def radiograph_findings(
    prediction: Prediction, images: Mapping[str, ImageFacts], default_site: dcodes.Coded,
) -> list[ProbabilityFinding | BoxFinding]:
    """The image-level finding per class (key image: the most probable image, when positive;
    site: that image's) and one box finding per detection, on its image, inside its bounds,
    numbered in order of decreasing score, coded as its class on the model card.

    Raises:
        KeyError: a detection of a class the prediction does not have."""
    found: list[ProbabilityFinding | BoxFinding] = []
    for result in prediction.classes:
        key = result.key_slice.slice_id if result.key_slice else None
        facts = images.get(key) if key else None
        found.append(ProbabilityFinding(
            label=result.name, finding=dicom_code(result.code),
            finding_site=facts.site if facts else default_site,
            probability=float(result.probability), threshold=float(result.threshold),
            positive=bool(result.positive),
            key_sop_instance_uids=(key,) if result.positive and key else ()))
    for number, detection in enumerate(prediction.detections, start=1):
        facts = images[detection.image_id]
        x0, y0, x1, y1 = detection.box
        found.append(BoxFinding(
            label=f"{detection.label}-{number}"[:48], sop_instance_uid=detection.image_id,
            box=Box(max(0.0, x0), max(0.0, y0), min(float(facts.columns), x1),
                    min(float(facts.rows), y1)),
            score=float(detection.score), finding_site=facts.site,
            finding=dicom_code(prediction.result(detection.label).code),
            laterality=facts.laterality))
    return found


def fhir_detection_findings(prediction: Prediction, images: Mapping[str, ImageFacts],
                            default_site: dcodes.Coded,
                            critical_keys: Sequence[str]) -> list[FhirFinding]:
    """One Observation per class (site and side of its key image) and one per detection
    (presence, score, site and side of its image)."""
    def site_of(image_id: str | None) -> tuple[FhirCoded, FhirCoded | None]:
        facts = images.get(image_id) if image_id else None
        if facts is None:
            return fhir_code(default_site), None
        side = fhir_code(facts.laterality) if facts.laterality else None
        return fhir_code(facts.site), side

    findings = []
    for r in prediction.classes:
        site, side = site_of(r.key_slice.slice_id if r.key_slice else None)
        findings.append(FhirFinding(
            code=fhir_code(r.code), body_site=site, laterality=side, presence=r.positive,
            probability=round(float(r.probability), 4),
            critical=bool(r.positive and r.key in critical_keys)))
    for detection in prediction.detections:
        site, side = site_of(detection.image_id)
        findings.append(FhirFinding(
            code=fhir_code(prediction.result(detection.label).code),
            body_site=site, laterality=side, presence=True,
            probability=round(float(detection.score), 4)))
    return findings


def _text(ds: Dataset, keyword: str) -> str | None:
    """A single text value as Unicode, or None when absent, empty or unreadable (a value in
    a character set pydicom cannot decode is dropped rather than failing the report)."""
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError, LookupError):
        return None
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    text = str(value if value is not None else "").replace("\x00", "").strip()
    return text or None


def _date(value: object) -> date | None:
    """A DA value (or ACR-NEMA's YYYY.MM.DD) as a date; None when it is not one date."""
    text = normalise_date(value)
    return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if text else None


def _time(value: object) -> time | None:
    text = str(value or "").split(".")[0].replace(":", "")
    try:
        if not text.isdigit() or len(text) not in (2, 4, 6):
            return None
        return time(int(text[:2]), int(text[2:4] or 0), int(text[4:6] or 0))
    except ValueError:
        return None


def _offset(value: str | None) -> timedelta | None:
    """TimezoneOffsetFromUTC (0008,0201), "&ZZXX" (PS3.3 C.12.1.1.8), as a timedelta."""
    if not value or len(value) != 5 or value[0] not in "+-" or not value[1:].isdigit():
        return None
    hours, minutes = int(value[1:3]), int(value[3:5])
    if hours > 14 or minutes > 59:
        return None
    sign = -1 if value[0] == "-" else 1
    return sign * timedelta(hours=hours, minutes=minutes)


def _item_text(ds: Dataset, sequence: str, keyword: str) -> str | None:
    try:
        items = ds.get(sequence) or []
        return next((t for t in (_text(item, keyword) for item in items) if t), None)
    except (ValueError, TypeError, LookupError):
        return None


def _placer_order(ds: Dataset) -> str | None:
    """Placer Order Number / Imaging Service Request (0040,2016): top level, else the first
    Request Attributes item that has it (PS3.3 C.7.3.1, C.4.10)."""
    return (_text(ds, "PlacerOrderNumberImagingServiceRequest")
            or _item_text(ds, "RequestAttributesSequence",
                          "PlacerOrderNumberImagingServiceRequest"))


def _uid(ds: Dataset, keyword: str) -> str:
    return _text(ds, keyword) or ""


def study_facts(headers: Sequence[Dataset], procedure: dcodes.Coded) -> StudyFacts:
    """The FHIR/HL7 study facts from the headers of the series that were read.

    Tolerant of whatever a real header legally holds: absent or empty Type 2 attributes,
    malformed dates and numbers (dropped), other character sets (decoded by pydicom)."""
    first = headers[0]
    by_series: dict[str, list[Dataset]] = {}
    for ds in headers:
        by_series.setdefault(_uid(ds, "SeriesInstanceUID"), []).append(ds)
    series = tuple(
        SeriesFacts(
            series_instance_uid=uid, modality=_text(items[0], "Modality") or "OT",
            series_number=int_value(items[0], "SeriesNumber"),
            description=_text(items[0], "SeriesDescription"),
            instances=tuple(InstanceFacts(
                sop_instance_uid=_uid(ds, "SOPInstanceUID"),
                sop_class_uid=_uid(ds, "SOPClassUID"),
                instance_number=int_value(ds, "InstanceNumber"),
            ) for ds in items),
        )
        for uid, items in by_series.items()
    )
    qualifiers = (first.get("IssuerOfPatientIDQualifiersSequence") or [None])[0]
    return StudyFacts(
        study_instance_uid=_uid(first, "StudyInstanceUID"),
        accession_number=_text(first, "AccessionNumber"),
        patient_id=_text(first, "PatientID") or "UNKNOWN",
        patient_id_issuer=_text(first, "IssuerOfPatientID"),
        patient_id_issuer_universal_id=(_text(qualifiers, "UniversalEntityID")
                                        if qualifiers is not None else None),
        patient_id_issuer_universal_id_type=(_text(qualifiers, "UniversalEntityIDType")
                                             if qualifiers is not None else None),
        accession_issuer=_item_text(first, "IssuerOfAccessionNumberSequence",
                                    "LocalNamespaceEntityID"),
        placer_order_number=_placer_order(first),
        placer_order_issuer=_item_text(first, "OrderPlacerIdentifierSequence",
                                       "LocalNamespaceEntityID"),
        patient_name=_text(first, "PatientName"),
        study_date=_date(first.get("StudyDate")),
        study_time=_time(first.get("StudyTime")),
        timezone_offset=_offset(_text(first, "TimezoneOffsetFromUTC")),
        study_description=_text(first, "StudyDescription"),
        procedure_code=fhir_code(procedure),
        series=series,
    )
