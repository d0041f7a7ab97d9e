"""Sample inputs for the encoders: one study per pipeline kind, with findings shaped like each
pipeline's output (ICH: probabilities; stroke: volumes; fracture: presence per region).

For tests, demos and documentation; the values are synthetic and identify no one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time

from hl7_fhir import codes
from hl7_fhir.fhir.ids import stable_uuid
from hl7_fhir.types import (
    Coded,
    DeviceInfo,
    Finding,
    InstanceFacts,
    SeriesFacts,
    StudyFacts,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"

# A UUID-derived OID (PS3.5 B.2) standing for the hospital's patient identifier domain.
SAMPLE_ISSUER_OID = f"2.25.{stable_uuid('sample-issuer').int}"

BRAIN = Coded(code="12738006", display="Brain")
BONE = Coded(code="272673000", display="Bone")


def sample_study(
    kind: str = "ich", *, n_instances: int = 3, study_suffix: str = "1"
) -> StudyFacts:
    """A study of `kind` ("ich", "stroke" or "fracture") with one series of `n_instances`."""
    modality, sop_class, loinc = {
        "ich": ("CT", CT_IMAGE_STORAGE, ("30799-1", "CT Head WO contrast")),
        "stroke": ("MR", MR_IMAGE_STORAGE, ("30657-1", "MR Brain WO contrast")),
        "fracture": ("DX", DX_IMAGE_STORAGE, ("18748-4", "Diagnostic imaging study")),
    }[kind]
    # UUID-derived UIDs (PS3.5 B.2) need no registered root.
    study_uid = f"2.25.{stable_uuid('sample-study', kind, study_suffix).int}"
    series_uid = f"{study_uid}.1"
    instances = tuple(
        InstanceFacts(
            sop_instance_uid=f"{series_uid}.{i}", sop_class_uid=sop_class, instance_number=i
        )
        for i in range(1, n_instances + 1)
    )
    return StudyFacts(
        study_instance_uid=study_uid,
        accession_number=f"ACC{study_suffix}0042",
        patient_id=f"PAT{study_suffix}77",
        patient_id_issuer="HOSPITAL",
        # IssuerOfPatientIDQualifiersSequence: the issuer's OID, so the Patient ID has a system.
        patient_id_issuer_universal_id=SAMPLE_ISSUER_OID,
        patient_id_issuer_universal_id_type="ISO",
        patient_name="Sample^Pat^Q^^",
        study_date=date(2024, 3, 5),
        study_time=time(14, 30, 15),
        study_description=f"{kind} sample",
        procedure_code=Coded(code=loinc[0], display=loinc[1], system=codes.LOINC),
        series=(
            SeriesFacts(
                series_instance_uid=series_uid,
                modality=modality,
                series_number=2,
                description="axial",
                instances=instances,
            ),
        ),
    )


def sample_findings(kind: str = "ich") -> tuple[Finding, ...]:
    """Findings shaped like the output of the `kind` pipeline."""
    if kind == "ich":
        return (
            Finding(
                code=Coded(code="1386000", display="Intracranial hemorrhage"),
                body_site=BRAIN,
                presence=True,
                probability=0.93,
                critical=True,
            ),
            Finding(
                code=Coded(code="21454007", display="Subarachnoid hemorrhage"),
                body_site=BRAIN,
                probability=0.12,
            ),
        )
    if kind == "stroke":
        return (
            Finding(
                code=Coded(code="432504007", display="Cerebral infarction"),
                body_site=BRAIN,
                presence=True,
                volume_ml=14.25,
                critical=True,
                lesion_count=2,
                laterality=Coded(code="7771000", display="Left"),
            ),
        )
    return (
        Finding(
            code=Coded(code="72704001", display="Fracture"),
            body_site=BONE,
            presence=True,
            probability=0.81,
        ),
        Finding(
            code=Coded(code="72704001", display="Fracture"),
            body_site=BONE,
            presence=True,
            probability=0.64,
        ),
    )


def sample_device(version: str = "1.0.0") -> DeviceInfo:
    return DeviceInfo(
        name="infernode-ich-demo",
        version=version,
        manufacturer="InferNode project",
        device_uid=f"2.25.{stable_uuid('sample-device', version).int}",
    )


def fixed_clock(at: datetime | None = None) -> Callable[[], datetime]:
    """A clock that always answers `at` (default 2024-03-05 15:00 UTC)."""
    value = at or datetime(2024, 3, 5, 15, 0, 0, tzinfo=UTC)
    return lambda: value
