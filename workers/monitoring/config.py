"""The `monitoring` section of the settings (docs/MONITORING.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hl7_fhir.labels import LabelRules


def default_label_rules() -> dict[str, LabelRules]:
    """Rules for the three demo pipelines; a site replaces them with its own codes."""
    return {
        "ich": LabelRules(
            positive_codes=["http://snomed.info/sct|1386000"],  # intracranial haemorrhage
            keywords=["haemorrhage", "hemorrhage", "haematoma", "hematoma", "bleed", "bleeding",
                      "subdural", "extradural", "epidural", "subarachnoid",
                      "intraparenchymal", "intraventricular"]),
        "stroke": LabelRules(
            positive_codes=["http://snomed.info/sct|432504007"],  # cerebral infarction
            keywords=["infarct", "infarction", "restricted diffusion", "diffusion restriction",
                      "ischaemia", "ischemia"]),
        "fracture": LabelRules(
            positive_codes=["http://snomed.info/sct|125605004"],  # fracture of bone
            keywords=["fracture", "fractures", "fractured"],
            normal_phrases=["no acute bony abnormality", "no bony injury", "normal radiograph",
                            "unremarkable"]),
    }


class ListenerTls(BaseModel):
    """The listener's certificate and key; with `client_ca_file`, a sender must present a
    certificate issued by that CA."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class ListenerConfig(BaseModel):
    """Where the HL7 v2 listener for final reports (ORU^R01 over MLLP) binds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="IP addresses that may send reports (the RIS); none: any")
    tls: ListenerTls | None = Field(
        default=None, description="MLLP inside TLS 1.2+ (every connection); None: plain TCP")


class FhirPollConfig(BaseModel):
    """Polling of final DiagnosticReports on the site's FHIR server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    token: str | None = None
    every_s: float = Field(default=300.0, gt=0)


class MonitoringConfig(BaseModel):
    """Monitoring aggregates, drift and ground truth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    aggregate_every_s: float = Field(
        default=900.0, gt=0, description="how often today's and yesterday's aggregates are "
        "recomputed")
    window_days: int = Field(default=7, ge=1, le=90,
                             description="days pooled for each day's PSI")
    min_window_results: int = Field(
        default=50, ge=1, description="analysed studies a PSI window needs")
    metrics_cache_s: float = Field(
        default=60.0, ge=0, description="seconds the monitoring metrics are reused between "
        "scrapes (agreement reads 90 days of jobs)")
    listener: ListenerConfig | None = Field(
        default=None, description="HL7 ORU listener for final reports; None: off")
    fhir_poll: FhirPollConfig | None = Field(
        default=None, description="FHIR DiagnosticReport polling; None: off")
    label_rules: dict[str, LabelRules] = Field(
        default_factory=default_label_rules,
        description="pipeline -> rules labelling its final reports")
    feedback_tokens: tuple[str, ...] = Field(
        default=(), description="bearer tokens accepted by POST /api/monitoring/feedback; "
        "none: the route answers 401")
