"""The `reporting` section of the node's settings: the site choices HL7 and FHIR leave open
(identifier systems, facility names, the zone of DICOM local times). Plain, serialisable values;
`encode_options()` turns them into the encoders' `EncodeOptions`."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hl7_fhir.types import EncodeOptions


class ReportingConfig(BaseModel):
    """Site settings of every FHIR Bundle and HL7 ORU the node writes (docs/DELIVERY.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str | None = Field(
        default=None, description="IANA zone of DICOM StudyDate/StudyTime when a study has no "
        "TimezoneOffsetFromUTC, e.g. Europe/Berlin; unset: UTC")
    patient_id_system: str | None = Field(
        default=None, description="FHIR identifier system (URI) of the site's Patient IDs")
    patient_id_systems: dict[str, str] = Field(
        default_factory=dict, description="IssuerOfPatientID -> FHIR identifier system URI")
    patient_id_authority: str | None = Field(
        default=None, max_length=20,
        description="PID-3 assigning authority when a study has no IssuerOfPatientID")
    accession_system: str | None = Field(
        default=None, description="identifier system (URI) of the RIS's accession numbers")
    placer_order_system: str | None = Field(
        default=None, description="identifier system (URI) of the EHR's placer order numbers")
    order_filler_namespace: str | None = Field(
        default=None, max_length=20,
        description="EI.2 of ORC-3/OBR-3 when a study names no accession issuer")
    include_patient: bool = Field(
        default=True, description="send a conditional-create Patient when a system is known")
    sending_application: str = Field(default="INFERNODE", max_length=20)
    sending_facility: str = Field(default="", max_length=20)
    receiving_application: str = Field(default="", max_length=20)
    receiving_facility: str = Field(default="", max_length=20)
    processing_id: Literal["P", "T", "D"] = "P"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r} (an IANA name)") from exc
        return value

    @model_validator(mode="after")
    def _valid_options(self) -> ReportingConfig:
        # EncodeOptions holds the rules (identifier systems are URIs...); check them at load
        try:
            self.encode_options()
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                       for e in exc.errors())) from None
        return self

    def encode_options(self) -> EncodeOptions:
        """The encoders' options. Raises pydantic.ValidationError on a system that is no URI."""
        values = self.model_dump(exclude={"timezone"})
        return EncodeOptions(**values,
                             timezone=ZoneInfo(self.timezone) if self.timezone else None)
