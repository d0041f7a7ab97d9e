"""Input types of the hl7_fhir encoders, in plain values.

The workers package maps the DICOM study facts and the model output onto these; hl7_fhir never
sees pixels, DICOM datasets or model objects. Every model is frozen and validated on
construction (UIDs, probability range, preview magic bytes), so the encoders can trust them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hl7_fhir import codes

SCHEMA_VERSION = 1

#: Returns "now" as a timezone-aware datetime; injected so encoders stay pure.
Clock = Callable[[], datetime]

# PS3.5 section 9.1: digits and dots, no leading zero in a component, at most 64 characters.
_UID_PATTERN = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Coded(_Model):
    """One coded concept; `system` is the FHIR code system URI (SNOMED CT unless noted)."""

    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    system: str = codes.SNOMED


class InstanceFacts(_Model):
    """One SOP instance of a source series (PS3.3 C.12.1)."""

    sop_instance_uid: str = Field(pattern=_UID_PATTERN, max_length=64)
    sop_class_uid: str = Field(pattern=_UID_PATTERN, max_length=64)
    instance_number: int | None = None


class SeriesFacts(_Model):
    """One series of the study as the node received it (PS3.3 C.7.3.1)."""

    series_instance_uid: str = Field(pattern=_UID_PATTERN, max_length=64)
    modality: str = Field(min_length=1, max_length=16)
    series_number: int | None = None
    description: str | None = None
    instances: tuple[InstanceFacts, ...] = ()


class StudyFacts(_Model):
    """The study the report is about, with identity values exactly as the source gave them.

    `patient_name` is the DICOM PN value (``Family^Given^Middle^Prefix^Suffix``).
    `study_time` is local time at the modality; `EncodeOptions.timezone` says which zone.
    `procedure_code` is the LOINC code of the examined procedure (e.g. 30799-1).
    """

    schema_version: int = SCHEMA_VERSION
    study_instance_uid: str = Field(pattern=_UID_PATTERN, max_length=64)
    accession_number: str | None = None
    patient_id: str = Field(min_length=1)
    patient_id_issuer: str | None = None
    patient_name: str | None = None
    study_date: date | None = None
    study_time: time | None = None
    study_description: str | None = None
    procedure_code: Coded
    series: tuple[SeriesFacts, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Distinct modalities of the series, in first-seen order."""
        return tuple(dict.fromkeys(s.modality for s in self.series))


class Finding(_Model):
    """One finding of the model for this study.

    At least one of presence / probability / volume is set. `tracking_uid` is the Tracking UID
    shared with the SEG segment and the SR measurement group (when there is one), so the FHIR
    Observation can be joined to them.
    """

    code: Coded
    body_site: Coded | None = None
    presence: bool | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    volume_ml: float | None = Field(default=None, ge=0.0)
    critical: bool = False
    tracking_uid: str | None = Field(default=None, pattern=_UID_PATTERN, max_length=64)

    @model_validator(mode="after")
    def _has_a_value(self) -> Finding:
        if self.presence is None and self.probability is None and self.volume_ml is None:
            raise ValueError("a finding needs a presence, a probability or a volume")
        return self


class DeviceInfo(_Model):
    """The algorithm that produced the result (IHE AIR: name, version, manufacturer, UID).

    `device_uid` changes when the weights change, as in the DICOM Contributing Equipment item.
    """

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    manufacturer: str = Field(min_length=1)
    device_uid: str = Field(pattern=_UID_PATTERN, max_length=64)


class Conclusion(_Model):
    """Free-text impression plus optional coded conclusions (DiagnosticReport.conclusionCode)."""

    text: str = Field(min_length=1)
    codes: tuple[Coded, ...] = ()


_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "application/pdf": b"%PDF-"}


class Preview(_Model):
    """A rendered preview attached to the report (DiagnosticReport.presentedForm)."""

    content_type: Literal["image/png", "application/pdf"]
    data: bytes = Field(min_length=1)
    title: str = "AI result preview"

    @model_validator(mode="after")
    def _magic_matches(self) -> Preview:
        if not self.data.startswith(_MAGIC[self.content_type]):
            raise ValueError(f"data is not {self.content_type}")
        return self


class EncodeOptions(_Model):
    """Site choices the standards leave open; one value per node, from its settings.

    - `patient_id_system`: FHIR identifier system of the source Patient ID (the EHR's MRN
      system); without it the Patient identifier carries only a value.
    - `accession_system`: identifier system of accession numbers (the RIS / order filler).
    - `timezone`: zone of DICOM StudyDate/StudyTime, which carry no offset (default UTC).
    - `include_patient`: add a conditional-create Patient entry so `subject` resolves inside the
      Bundle; switch off for EHRs that refuse Patient writes (subject is then a logical
      reference by identifier).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    patient_id_system: str | None = None
    accession_system: str | None = None
    timezone: tzinfo | None = None
    include_patient: bool = True
    sending_application: str = "INFERNODE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: Literal["P", "T", "D"] = "P"

    @field_validator("patient_id_system", "accession_system")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("an identifier system must be a URI")
        return value


def study_datetime(study: StudyFacts, tz: tzinfo | None) -> date | datetime | None:
    """The study's date, or its aware date and time when StudyTime is known."""
    if study.study_date is None:
        return None
    if study.study_time is None:
        return study.study_date
    # Without a configured zone, UTC: the machine's own zone would make output host-dependent.
    return datetime.combine(study.study_date, study.study_time, tzinfo=tz or UTC)


def now(clock: Clock) -> datetime:
    """Read the clock and refuse a naive value: FHIR instants need an offset."""
    value = clock()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the clock must return a timezone-aware datetime")
    return value
