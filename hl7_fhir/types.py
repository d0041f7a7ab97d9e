"""Input types of the hl7_fhir encoders, in plain values.

The workers package maps the DICOM study facts and the model output onto these; hl7_fhir never
sees pixels, DICOM datasets or model objects. Every model is frozen and validated on
construction (UIDs, probability range, preview magic bytes), so the encoders can trust them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
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

    - `patient_name`: the DICOM PN value decoded to Unicode (PS3.5 6.2.1), up to three
      '='-separated component groups ``alphabetic=ideographic=phonetic``, each
      ``Family^Given^Middle^Prefix^Suffix``; every group is kept in HL7 and FHIR.
    - `patient_id_issuer`: IssuerOfPatientID (0010,0021), as given.
    - `patient_id_issuer_universal_id` / `_type`: UniversalEntityID (0040,0032) and
      UniversalEntityIDType (0040,0033) of IssuerOfPatientIDQualifiersSequence (0010,0024),
      e.g. ``"1.2.3.4"`` / ``"ISO"`` or an URI / ``"URI"``.
    - `accession_issuer`: LocalNamespaceEntityID (0040,0031) of
      IssuerOfAccessionNumberSequence (0008,0051), the RIS namespace of the accession.
    - `placer_order_number`: Placer Order Number / Imaging Service Request (0040,2016), at
      the top level or in RequestAttributesSequence (0040,0275) items;
      `placer_order_issuer`: LocalNamespaceEntityID of OrderPlacerIdentifierSequence
      (0040,0026).
    - `study_time` is local time at the modality. `timezone_offset` is TimezoneOffsetFromUTC
      (0008,0201) (``"+0900"`` -> ``timedelta(hours=9)``); without it
      `EncodeOptions.timezone` says which zone, and without that UTC is assumed.
    - `procedure_code` is the LOINC code of the examined procedure (e.g. 30799-1).
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
    patient_id_issuer_universal_id: str | None = None
    patient_id_issuer_universal_id_type: str | None = None
    accession_issuer: str | None = None
    placer_order_number: str | None = None
    placer_order_issuer: str | None = None
    timezone_offset: timedelta | None = None

    @field_validator("timezone_offset")
    @classmethod
    def _offset_in_range(cls, value: timedelta | None) -> timedelta | None:
        # PS3.3 C.12.1.1.8: -1200 to +1400; a whole number of minutes.
        if value is not None and (
            not timedelta(hours=-12) <= value <= timedelta(hours=14)
            or value % timedelta(minutes=1)
        ):
            raise ValueError("a timezone offset lies in -12:00..+14:00, in whole minutes")
        return value

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
    lesion_count: int | None = Field(default=None, ge=0)
    """How many separate lesions make up the finding (e.g. infarct components)."""
    laterality: Coded | None = None
    """Side of the finding (SNOMED CT Left / Right / Bilateral)."""

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

    - `patient_id_system`: FHIR identifier system of the site's own Patient IDs (the EHR's
      MRN system); used when the study's IssuerOfPatientID is absent or not in
      `patient_id_systems`.
    - `patient_id_systems`: IssuerOfPatientID value -> FHIR identifier system URI.
    - `patient_id_authority`: PID-3 assigning authority namespace when the study has no
      IssuerOfPatientID (or one longer than an HD namespace allows).
    - `accession_system`: identifier system of accession numbers (the RIS / order filler).
    - `placer_order_system`: identifier system of placer order numbers (the ordering EHR);
      DiagnosticReport.basedOn is only sent with one.
    - `order_filler_namespace`: EI.2 of ORC-3/OBR-3 when the study names no accession issuer;
      the accession itself (EI.1) is never changed.
    - `timezone`: zone of DICOM StudyDate/StudyTime when the study has no
      TimezoneOffsetFromUTC; None means UTC. HL7 send times are shown in it too.
    - `include_patient`: allow a conditional-create Patient entry (``ifNoneExist`` on
      system|value) so `subject` resolves inside the Bundle; it is only sent when an
      identifier system is known. Off, or without a system, the subject is a logical
      reference by identifier.
    - MSH-3..6 and MSH-11 processing id; HD.1 namespace IDs (IS) are at most 20 characters
      in HL7 v2.5.1 (section 2.A.33), so longer values are refused here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    patient_id_system: str | None = None
    accession_system: str | None = None
    timezone: tzinfo | None = None
    include_patient: bool = True
    sending_application: str = Field(default="INFERNODE", max_length=20)
    sending_facility: str = Field(default="", max_length=20)
    receiving_application: str = Field(default="", max_length=20)
    receiving_facility: str = Field(default="", max_length=20)
    processing_id: Literal["P", "T", "D"] = "P"
    patient_id_systems: dict[str, str] = Field(default_factory=dict)
    patient_id_authority: str | None = Field(default=None, max_length=20)
    placer_order_system: str | None = None
    order_filler_namespace: str | None = Field(default=None, max_length=20)

    @field_validator("patient_id_system", "accession_system", "placer_order_system")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("an identifier system must be a URI")
        return value

    @field_validator("patient_id_systems")
    @classmethod
    def _uris(cls, value: dict[str, str]) -> dict[str, str]:
        if any(":" not in system for system in value.values()):
            raise ValueError("an identifier system must be a URI")
        return value


def study_zone(study: StudyFacts, tz: tzinfo | None) -> tzinfo:
    """The zone of the study's local date and time: TimezoneOffsetFromUTC (0008,0201) when
    the source has it, else the configured site zone, else UTC (documented default)."""
    if study.timezone_offset is not None:
        return timezone(study.timezone_offset)
    return tz or UTC


def study_datetime(study: StudyFacts, tz: tzinfo | None) -> date | datetime | None:
    """The study's date, or its aware date and time when StudyTime is known.

    DICOM dates and times are local (PS3.3 C.12.1.1.8); the offset comes from `study_zone`,
    so a local time is never stamped as UTC unless UTC is the documented fallback.
    """
    if study.study_date is None:
        return None
    if study.study_time is None:
        return study.study_date
    # Without an offset or a configured zone, UTC: the host's zone would make output vary.
    return datetime.combine(study.study_date, study.study_time, tzinfo=study_zone(study, tz))


def now(clock: Clock) -> datetime:
    """Read the clock and refuse a naive value: FHIR instants need an offset."""
    value = clock()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the clock must return a timezone-aware datetime")
    return value
