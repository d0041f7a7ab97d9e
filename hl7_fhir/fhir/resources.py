"""Builders of the single resources of a report: Patient, ImagingStudy, Device, Observation,
DiagnosticReport (FHIR R4, https://hl7.org/fhir/R4/).

Each builder returns a validated fhir.resources R4B model and does no I/O. References are the
urn:uuid fullUrls of the Bundle the resources travel in (R4 2.36.4.1 "Resolving references in
Bundles"); the receiving server rewrites them to its own ids.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from hl7_fhir import codes
from hl7_fhir.fhir.ids import Identity
from hl7_fhir.identity import NameGroup, name_groups
from hl7_fhir.types import (
    Coded,
    Conclusion,
    DeviceInfo,
    Finding,
    Preview,
    SeriesFacts,
    StudyFacts,
)

Json = dict[str, Any]


def coding(system: str, pair: tuple[str, str]) -> Json:
    return {"system": system, "code": pair[0], "display": pair[1]}


def concept(value: Coded) -> Json:
    """A CodeableConcept with one coding and the display as text."""
    return {
        "coding": [{"system": value.system, "code": value.code, "display": value.display}],
        "text": value.display,
    }


def fhir_time(value: date | datetime) -> str:
    return value.isoformat()


#: FHIR R4 core extension for the representation of a name part (ISO 21090 EN.representation).
EN_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
# HL7 table 4000 (A, I, P) -> ISO 21090 EntityNamePartQualifier representation codes.
_ISO_REPRESENTATION = {"A": "ABC", "I": "IDE", "P": "SYL"}


def _human_name(group: NameGroup) -> Json:
    name: Json = {
        "extension": [
            {"url": EN_REPRESENTATION, "valueCode": _ISO_REPRESENTATION[group.representation]}
        ],
        "use": "official",
    }
    if group.text:
        name["text"] = group.text
    if group.family:
        name["family"] = group.family
    if group.given or group.middle:
        name["given"] = [g for g in (group.given, group.middle) if g]
    if group.prefix:
        name["prefix"] = [group.prefix]
    if group.suffix:
        name["suffix"] = [group.suffix]
    return name


def human_names(pn: str | None) -> list[Json]:
    """One HumanName per component group of a DICOM PN value (PS3.5 6.2.1): alphabetic,
    ideographic and phonetic, each marked with the ISO 21090 representation extension
    (ABC / IDE / SYL, as JP Core does) and its `text`. Empty groups are left out."""
    return [_human_name(group) for group in name_groups(pn)]


def human_name(pn: str) -> Json:
    """The first HumanName of `pn` (kept for callers that want one name); empty when the
    value has no name at all."""
    names = human_names(pn)
    return names[0] if names else {}


def build_patient(study: StudyFacts, ident: Identity, identifier: Json | None = None) -> Patient:
    """Patient as identified by the source (R4 8.1); only identifier and names are known.
    `identifier` overrides the plain identifier of `ident` (to add its type)."""
    body: Json = {"resourceType": "Patient", "identifier": [identifier or ident.identifier()]}
    names = human_names(study.patient_name)
    if names:
        body["name"] = names
    return Patient.model_validate(body)


def build_imaging_study(
    study: StudyFacts,
    ident: Identity,
    subject: Json,
    started: date | datetime | None,
    accession_system: str | None,
) -> ImagingStudy:
    """ImagingStudy (R4 13.2) of the node: its own identifier `ident` first (the resource is
    created and updated on that identifier only, so an ImagingStudy the PACS or EHR owns for
    the same study is never overwritten), then the Study UID as urn:dicom:uid identifier and
    the accession (type ACSN); series and instances with their UIDs and SOP classes as
    urn:oid URIs."""
    identifiers: list[Json] = [
        ident.identifier(),
        {"system": codes.DICOM_UID, "value": f"urn:oid:{study.study_instance_uid}"},
        *accession_identifier(study, accession_system),
    ]
    body: Json = {
        "resourceType": "ImagingStudy",
        "identifier": identifiers,
        "status": "available",
        "subject": subject,
        "procedureCode": [concept(study.procedure_code)],
        "numberOfSeries": len(study.series),
        "numberOfInstances": sum(len(s.instances) for s in study.series),
    }
    if study.modalities:
        body["modality"] = [{"system": codes.DCM, "code": m} for m in study.modalities]
    if started is not None:
        body["started"] = fhir_time(started)
    if study.study_description:
        body["description"] = study.study_description
    if study.series:
        body["series"] = [_series(s) for s in study.series]
    return ImagingStudy.model_validate(body)


def _series(series: SeriesFacts) -> Json:
    out: Json = {
        "uid": series.series_instance_uid,
        "modality": {"system": codes.DCM, "code": series.modality},
        "numberOfInstances": len(series.instances),
    }
    if series.series_number is not None:
        out["number"] = series.series_number
    if series.description:
        out["description"] = series.description
    if series.instances:
        out["instance"] = [
            {
                "uid": i.sop_instance_uid,
                "sopClass": {"system": codes.URI, "code": f"urn:oid:{i.sop_class_uid}"},
                **({"number": i.instance_number} if i.instance_number is not None else {}),
            }
            for i in series.instances
        ]
    return out


def build_device(device: DeviceInfo, ident: Identity) -> Device:
    """Device for the algorithm (R4 9.2): Device UID identifier, model name, version,
    manufacturer."""
    return Device.model_validate(
        {
            "resourceType": "Device",
            "identifier": [ident.identifier()],
            "status": "active",
            "manufacturer": device.manufacturer,
            "deviceName": [{"name": device.name, "type": "model-name"}],
            "version": [{"value": device.version}],
        }
    )


def _quantity(value: float, unit: tuple[str, str]) -> Json:
    return {"value": value, "unit": unit[1], "system": codes.UCUM, "code": unit[0]}


def _interpretation(finding: Finding) -> list[Json]:
    if finding.presence is None:
        return []
    if not finding.presence:
        pair = codes.NORMAL
    else:
        pair = codes.CRITICAL if finding.critical else codes.ABNORMAL
    return [{"coding": [coding(codes.INTERPRETATION, pair)]}]


def build_observation(
    finding: Finding,
    ident: Identity,
    refs: dict[str, Json],
    effective: date | datetime,
    issued: datetime,
    device: DeviceInfo,
) -> Observation:
    """Observation (R4 8.19) for one finding: category imaging, SNOMED code, presence as the
    value (Present/Absent), probability and volume as components, bodySite, derivedFrom the
    ImagingStudy and device -> Device; status preliminary because nobody has verified it.

    `refs` holds the references `subject`, `imaging_study` and `device`.
    """
    body: Json = {
        "resourceType": "Observation",
        "identifier": [ident.identifier()],
        "status": "preliminary",
        "category": [{"coding": [coding(codes.OBSERVATION_CATEGORY, codes.IMAGING_CATEGORY)]}],
        "code": concept(finding.code),
        "subject": refs["subject"],
        "effectiveDateTime": fhir_time(effective),
        "issued": fhir_time(issued),
        "device": refs["device"],
        "derivedFrom": [refs["imaging_study"]],
        "note": [{"text": f"Generated by {device.name} {device.version}; not verified."}],
    }
    if finding.presence is not None:
        presence = codes.PRESENT if finding.presence else codes.ABSENT
        body["valueCodeableConcept"] = {
            "coding": [coding(codes.SNOMED, presence)],
            "text": presence[1],
        }
    components: list[Json] = []
    if finding.probability is not None:
        components.append(
            {
                "code": {"coding": [coding(codes.DCM, codes.PROBABILITY)]},
                "valueQuantity": _quantity(finding.probability, codes.UNITY),
            }
        )
    if finding.volume_ml is not None:
        components.append(
            {
                "code": {"coding": [coding(codes.SNOMED, codes.VOLUME)]},
                "valueQuantity": _quantity(finding.volume_ml, codes.ML),
            }
        )
    if finding.lesion_count is not None:
        components.append(
            {
                "code": {"coding": [coding(codes.SNOMED, codes.NUMBER_OF_LESIONS)]},
                "valueInteger": finding.lesion_count,
            }
        )
    if finding.laterality is not None:
        components.append(
            {
                "code": {"coding": [coding(codes.SNOMED, codes.LATERALITY)]},
                "valueCodeableConcept": concept(finding.laterality),
            }
        )
    if components:
        body["component"] = components
    if finding.body_site is not None:
        body["bodySite"] = concept(finding.body_site)
    interpretation = _interpretation(finding)
    if interpretation:
        body["interpretation"] = interpretation
    return Observation.model_validate(body)


def accession_identifier(study: StudyFacts, accession_system: str | None) -> list[Json]:
    """The accession number as an identifier of type ACSN (HL7 v2 table 0203), or nothing."""
    if not study.accession_number:
        return []
    accession: Json = {
        "type": {"coding": [coding(codes.V2_0203, codes.ACCESSION_TYPE)]},
        "value": study.accession_number,
    }
    if accession_system:
        accession["system"] = accession_system
    return [accession]


def placer_order_reference(study: StudyFacts, placer_system: str | None) -> list[Json]:
    """DiagnosticReport.basedOn: the order as a logical reference to its ServiceRequest by
    placer order number (type PLAC, v2 table 0203), only when both the number and the
    placer's identifier system are known (never an identifier without a system)."""
    if not study.placer_order_number or not placer_system:
        return []
    identifier = {
        "type": {"coding": [coding(codes.V2_0203, codes.PLACER_TYPE)]},
        "system": placer_system,
        "value": study.placer_order_number,
    }
    return [{"type": "ServiceRequest", "identifier": identifier}]


def build_diagnostic_report(
    study: StudyFacts,
    ident: Identity,
    refs: dict[str, Any],
    effective: date | datetime,
    issued: datetime,
    conclusion: Conclusion,
    preview: Preview | None,
    accession_system: str | None = None,
) -> DiagnosticReport:
    """DiagnosticReport (R4 8.13), status preliminary, category Radiology (LOINC LP29684-5 and
    v2-0074 RAD), code = the procedure's LOINC code, with imagingStudy, result, conclusion,
    conclusionCode and an optional presentedForm preview.

    `refs` holds `subject`, `imaging_study`, `results` (a list of references) and optionally
    `based_on` (logical references to the order). The report carries the study's accession
    number as a second identifier (type ACSN), so an EHR finds the report of an order by its
    accession. `conclusion.text` is used as given: the caller shapes it (`hl7_fhir.text`).
    """
    body: Json = {
        "resourceType": "DiagnosticReport",
        "identifier": [ident.identifier(), *accession_identifier(study, accession_system)],
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    coding(codes.LOINC, codes.RADIOLOGY_LOINC),
                    coding(codes.V2_0074, codes.RADIOLOGY_V2),
                ]
            }
        ],
        "code": concept(study.procedure_code),
        "subject": refs["subject"],
        "effectiveDateTime": fhir_time(effective),
        "issued": fhir_time(issued),
        "imagingStudy": [refs["imaging_study"]],
        "conclusion": conclusion.text,
    }
    if refs.get("based_on"):
        body["basedOn"] = refs["based_on"]
    if refs["results"]:
        body["result"] = refs["results"]
    if conclusion.codes:
        body["conclusionCode"] = [concept(c) for c in conclusion.codes]
    if preview is not None:
        body["presentedForm"] = [
            {
                "contentType": preview.content_type,
                "data": base64.b64encode(preview.data).decode("ascii"),
                "title": preview.title,
                "creation": fhir_time(issued),
            }
        ]
    return DiagnosticReport.model_validate(body)
