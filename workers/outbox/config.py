"""The `workers.delivery` section: where results go, and how long failures are retried.

Each destination is typed (a pydantic discriminated union on `type`) and says which output
kinds it takes and, optionally, which pipelines. Secrets are `SecretStr`, so they never show in
a printed or logged configuration. Nothing here imports an adapter: the configuration is cheap
to load on a worker host that never delivers anything.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DICOM = "dicom"
"""A DICOM Part 10 file (SEG, SR, KOS)."""
OVERLAY = "dicom-overlay"
"""A DICOM Part 10 file: one image of the overlay series (Secondary Capture, result burned in)."""
GSPS = "dicom-gsps"
"""A DICOM Part 10 file: the Grayscale Softcopy Presentation State drawing the result."""
DICOM_KINDS = (DICOM, OVERLAY, GSPS)
"""What a DICOM destination takes, and by default sends: leave the overlay series or the GSPS
out of one with `kinds: [dicom]` (or `[dicom, dicom-gsps]`...)."""
FHIR_BUNDLE = "fhir-bundle"
"""A JSON file holding a FHIR R4 transaction Bundle."""
HL7_ORU = "hl7-oru"
"""A text file holding an HL7 v2.5.1 ORU^R01 in ER7 (segments ended by CR)."""
PRIORITY_SIGNAL = "priority-signal"
"""Not a file: the one priority signal of a study (PipelineResult.priority_flag)."""

OUTPUT_KINDS = (*DICOM_KINDS, FHIR_BUNDLE, HL7_ORU, PRIORITY_SIGNAL)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Destination(BaseModel):
    """Fields every destination has. `kinds` None means the type's default kinds; an empty
    `pipelines` means every pipeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="", pattern=_NAME)
    enabled: bool = True
    kinds: tuple[str, ...] | None = None
    pipelines: tuple[str, ...] = ()
    timeout_s: float = Field(default=60.0, gt=0)

    #: output kinds this type can send, and those it takes when `kinds` is not given
    accepted_kinds: ClassVar[tuple[str, ...]] = ()
    default_kinds: ClassVar[tuple[str, ...]] = ()
    #: True when the outputs of one job go in one association or request
    batches: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_type(cls, data: Any) -> Any:
        field = cls.model_fields.get("type")
        kind = data.get("type") if isinstance(data, dict) else None
        kind = kind or (field.default if field is not None else None)
        if isinstance(data, dict) and not data.get("name") and isinstance(kind, str):
            data = {**data, "name": kind}
        return data

    @model_validator(mode="after")
    def _kinds_accepted(self) -> _Destination:
        unknown = set(self.kinds or ()) - set(self.accepted_kinds)
        if unknown:
            raise ValueError(f"destination type {getattr(self, 'type', '?')!r} cannot send "
                             f"{sorted(unknown)}; it takes {list(self.accepted_kinds)}")
        return self

    def effective_kinds(self) -> tuple[str, ...]:
        return self.kinds if self.kinds is not None else self.default_kinds

    def takes(self, kind: str, pipeline: str) -> bool:
        """Whether an output of `kind` from `pipeline` is delivered here."""
        return (self.enabled and kind in self.effective_kinds()
                and (not self.pipelines or pipeline in self.pipelines))


class DicomTls(BaseModel):
    """TLS to a receiver (DICOM, PS3.15 B.1; or MLLP): its CA, and the node's certificate if
    asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


class _Deidentifying(BaseModel):
    """De-identification before sending (dicom_node.deid; docs/OPERATIONS.md,
    De-identification), for DICOM destinations that must not receive PHI."""

    deidentify: bool = Field(
        default=False, description="send de-identified copies (PS3.15 Basic Profile; "
        "docs/OPERATIONS.md, De-identification)")
    deid_retain_uids: bool = Field(
        default=False, description="keep UIDs (Retain UIDs Option) instead of mapping them")
    deid_uid_secret: SecretStr | None = Field(
        default=None, description="per-site secret (16+ characters) mapping UIDs")

    @model_validator(mode="after")
    def _deid_secret(self) -> _Deidentifying:
        secret = self.deid_uid_secret
        if self.deidentify and not self.deid_retain_uids and (
                secret is None or len(secret.get_secret_value()) < 16):
            raise ValueError("deidentify maps UIDs: give deid_uid_secret (16+ characters) "
                             "or deid_retain_uids: true")
        return self


class DicomDestination(_Destination, _Deidentifying):
    """A PACS over DIMSE C-STORE (PS3.4 B.2); one association per job's batch."""

    type: Literal["dicom"] = "dicom"
    host: str
    port: int = Field(ge=1, le=65535)
    called_ae: str = Field(min_length=1, max_length=16)
    calling_ae: str = Field(default="INFERNODE", min_length=1, max_length=16)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    tls: DicomTls | None = None
    accepted_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    default_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    batches: ClassVar[bool] = True


class SenderAddress(BaseModel):
    """Where the C-STORE SCP of a sending AE listens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(ge=1, le=65535)


class SenderDestination(_Destination):
    """Back to the AE that sent the study (a modality or PACS that asked for results), over
    C-STORE. The sender's AE title comes from the instance index; `senders` says where each
    AE's SCP listens (an AE not listed is a permanent failure, `no_return_address`)."""

    type: Literal["sender"] = "sender"
    senders: dict[str, SenderAddress] = Field(default_factory=dict)
    calling_ae: str = Field(default="INFERNODE", min_length=1, max_length=16)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    accepted_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    default_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    batches: ClassVar[bool] = True


class StowDestination(_Destination, _Deidentifying):
    """A PACS over DICOMweb STOW-RS (PS3.18 10.5); one request per job's batch."""

    type: Literal["stow"] = "stow"
    base_url: str
    token: SecretStr | None = None
    accepted_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    default_kinds: ClassVar[tuple[str, ...]] = DICOM_KINDS
    batches: ClassVar[bool] = True


class _FhirAuth(_Destination):
    """A FHIR server's base URL with a static bearer token or OAuth2 client credentials
    (RFC 6749 4.4: token_url, client_id, client_secret), or no authentication."""

    base_url: str
    token: SecretStr | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _one_auth(self) -> _FhirAuth:
        oauth = (self.token_url, self.client_id, self.client_secret)
        if any(v is not None for v in oauth) and not all(v is not None for v in oauth):
            raise ValueError("OAuth2 client credentials need token_url, client_id and "
                             "client_secret together")
        if self.token is not None and self.token_url is not None:
            raise ValueError("give either token or OAuth2 client credentials, not both")
        return self


class FhirDestination(_FhirAuth):
    """An EHR's FHIR endpoint: the report Bundle is POSTed as a transaction (FHIR R4
    3.1.0.11); its entries are conditional updates, so a re-run updates the report."""

    type: Literal["fhir"] = "fhir"
    accepted_kinds: ClassVar[tuple[str, ...]] = (FHIR_BUNDLE,)
    default_kinds: ClassVar[tuple[str, ...]] = (FHIR_BUNDLE,)


class FhirTaskDestination(_FhirAuth):
    """Priority signal as a FHIR Task (priority `stat`) whose focus is the study's
    DiagnosticReport, created conditionally so the EHR holds one per study."""

    type: Literal["fhir-task"] = "fhir-task"
    accepted_kinds: ClassVar[tuple[str, ...]] = (PRIORITY_SIGNAL,)
    default_kinds: ClassVar[tuple[str, ...]] = (PRIORITY_SIGNAL,)


class FacadeDestination(_Destination):
    """The node's own read-only FHIR facade store (same database), so an EHR can pull."""

    type: Literal["facade"] = "facade"
    accepted_kinds: ClassVar[tuple[str, ...]] = (FHIR_BUNDLE,)
    default_kinds: ClassVar[tuple[str, ...]] = (FHIR_BUNDLE,)


class MllpDestination(_Destination):
    """An HL7 v2 receiver over MLLP (HL7 v2.5.1 Appendix C); the ACK is read and checked."""

    type: Literal["mllp"] = "mllp"
    host: str
    port: int = Field(ge=1, le=65535)
    tls: DicomTls | None = Field(
        default=None, description="MLLP inside TLS 1.2+: the receiver's CA (its name or IP "
        "address is checked against its certificate), and the node's certificate if it asks")
    accepted_kinds: ClassVar[tuple[str, ...]] = (HL7_ORU,)
    default_kinds: ClassVar[tuple[str, ...]] = (HL7_ORU,)


class WebhookDestination(_Destination):
    """An HTTP endpoint that receives the priority signal as JSON (POST, optional bearer)."""

    type: Literal["webhook"] = "webhook"
    url: str
    token: SecretStr | None = None
    accepted_kinds: ClassVar[tuple[str, ...]] = (PRIORITY_SIGNAL,)
    default_kinds: ClassVar[tuple[str, ...]] = (PRIORITY_SIGNAL,)


Destination = Annotated[
    DicomDestination | SenderDestination | StowDestination | FhirDestination | FhirTaskDestination
    | FacadeDestination | MllpDestination | WebhookDestination,
    Field(discriminator="type"),
]


class BackoffConfig(BaseModel):
    """Delay before retry n (n = 1, 2, ...) is `base_s * factor**(n-1)`, at most
    `max_delay_s`, spread by +/- `jitter` (a fraction) so retries to a peer that comes back do
    not arrive together. A delivery still failing `give_up_after_s` after its first attempt
    is dead-lettered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float = Field(default=60.0, gt=0)
    factor: float = Field(default=2.0, ge=1.0)
    max_delay_s: float = Field(default=3600.0, gt=0)
    give_up_after_s: float = Field(default=36 * 3600.0, gt=0)
    jitter: float = Field(default=0.1, ge=0.0, lt=1.0)

    def delay_s(self, attempt: int) -> float:
        """The delay after failed attempt `attempt`, before jitter."""
        return float(min(self.base_s * self.factor ** max(0, attempt - 1), self.max_delay_s))


def _default_destinations() -> list[Any]:
    return [FacadeDestination()]


class DeliveryConfig(BaseModel):
    """Destinations, backoff and the runner's pacing. The default is the node's own FHIR
    facade only; list it explicitly (`{type: facade}`) when giving other destinations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    destinations: list[Destination] = Field(default_factory=_default_destinations)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    poll_interval_s: float = Field(default=2.0, gt=0)
    lease_s: float = Field(default=900.0, gt=0)
    claim_limit: int = Field(default=200, ge=1)
    parallel_destinations: int = Field(default=4, ge=1)
    stop_grace_s: float = Field(default=3.0, ge=0)
    """At shutdown, how long a batch being sent may take to finish; one still in flight then
    is handed back (due again after the restart) and its sending thread abandoned."""

    @model_validator(mode="after")
    def _unique_names(self) -> DeliveryConfig:
        names = [d.name for d in self.destinations]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"destination names must be unique; give `name` to each of "
                             f"{duplicated}")
        return self

    def destination(self, name: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == name), None)
