"""Translations between the leaf packages' plain types: model output -> DICOM findings and
FHIR/HL7 findings; DICOM headers -> the FHIR study facts. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time

from pydicom.dataset import Dataset

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import MaskFinding, ProbabilityFinding
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
    prediction: Prediction, site: dcodes.Coded, voxel_volume_mm3: float
) -> list[ProbabilityFinding | MaskFinding]:
    """One probability finding per class (key slice when positive), one mask finding per mask."""
    found: list[ProbabilityFinding | MaskFinding] = []
    for result in prediction.classes:
        key = (result.key_slice.slice_id,) if result.positive and result.key_slice else ()
        found.append(ProbabilityFinding(
            label=result.name, finding=dicom_code(result.code), finding_site=site,
            probability=float(result.probability), threshold=float(result.threshold),
            positive=bool(result.positive), key_sop_instance_uids=key,
        ))
    for mask in prediction.masks:
        if not mask.mask.any():
            continue
        found.append(MaskFinding(
            label=f"{mask.name} (segmented)", finding=dicom_code(mask.code),
            property_type=dcodes.HEMORRHAGE_MORPHOLOGY, finding_site=site,
            mask=mask.mask.astype(bool), voxel_volume_mm3=voxel_volume_mm3,
        ))
    return found


def fhir_findings(prediction: Prediction, site: dcodes.Coded,
                  critical_keys: Sequence[str]) -> list[FhirFinding]:
    findings = [
        FhirFinding(code=fhir_code(r.code), body_site=fhir_code(site), presence=r.positive,
                    probability=round(float(r.probability), 4),
                    critical=bool(r.positive and r.key in critical_keys))
        for r in prediction.classes
    ]
    findings += [
        FhirFinding(code=fhir_code(m.code), body_site=fhir_code(site), presence=True,
                    volume_ml=round(float(m.volume_ml), 3))
        for m in prediction.masks if m.voxel_count > 0
    ]
    return findings


def _date(value: object) -> date | None:
    text = str(value or "")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None
    except ValueError:
        return None


def _time(value: object) -> time | None:
    text = str(value or "").split(".")[0]
    try:
        return time(int(text[:2]), int(text[2:4] or 0), int(text[4:6] or 0)) if text else None
    except ValueError:
        return None


def study_facts(headers: Sequence[Dataset], procedure: dcodes.Coded) -> StudyFacts:
    """The FHIR/HL7 study facts from the headers of the series that were read."""
    first = headers[0]
    by_series: dict[str, list[Dataset]] = {}
    for ds in headers:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    series = tuple(
        SeriesFacts(
            series_instance_uid=uid, modality=str(items[0].get("Modality", "OT")),
            series_number=int(items[0].SeriesNumber) if items[0].get("SeriesNumber") else None,
            description=str(items[0].get("SeriesDescription", "")) or None,
            instances=tuple(InstanceFacts(
                sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
                instance_number=int(ds.InstanceNumber) if ds.get("InstanceNumber") else None,
            ) for ds in items),
        )
        for uid, items in by_series.items()
    )
    return StudyFacts(
        study_instance_uid=str(first.StudyInstanceUID),
        accession_number=str(first.get("AccessionNumber", "")) or None,
        patient_id=str(first.get("PatientID", "")) or "UNKNOWN",
        patient_name=str(first.get("PatientName", "")) or None,
        study_date=_date(first.get("StudyDate")),
        study_time=_time(first.get("StudyTime")),
        study_description=str(first.get("StudyDescription", "")) or None,
        procedure_code=fhir_code(procedure),
        series=series,
    )
