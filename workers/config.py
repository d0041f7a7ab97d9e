"""The `workers` section of the node's settings: broker, time limits, attempts, pipelines and
routing rules. The composition root (infernode) loads it from YAML/TOML plus environment
overrides and hands it in; nothing here reads files or the environment."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.messages import Priority
from workers.outbox.config import DeliveryConfig
from workers.rules import Exclusion, RoutingRule

# SOP Class UIDs (PS3.4 B.5) used by the default rules and exclusions.
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
RADIOPHARMACEUTICAL_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
PATIENT_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.73"

NOOP_FACTORY = "workers.noop:NoopPipeline"


class PipelineSpec(BaseModel):
    """How a worker builds one pipeline: `factory` is `module:callable` taking
    `(device: str, options: dict)` and returning a `workers.registry.Pipeline`.
    `model_version` is part of the job key, so changing it re-runs studies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    factory: str = NOOP_FACTORY
    model_version: str = "noop-1"
    options: dict[str, Any] = Field(default_factory=dict)


def _text(tag: str, pattern: str) -> dict[str, Any]:
    return {"tag": tag, "matches": pattern}




def default_exclusions() -> list[Exclusion]:
    """Series that are never analysed: localizers, dose reports, secondary captures and
    reformats, and non-image objects (including the node's own SEG/SR/KOS coming back)."""
    raw: list[dict[str, Any]] = [
        {"name": "localizer", "when": {"any": [
            {"tag": "ImageType", "contains_any": ["LOCALIZER", "SCOUT"]},
            _text("SeriesDescription",
                  r"(?i).*(locali[sz]er|scout|topogram|surview|scanogram|survey|3.?plane).*"),
        ]}},
        {"name": "dose report", "when": {"any": [
            {"tag": "SOPClassUID", "contains_any": [
                XRAY_RADIATION_DOSE_SR, RADIOPHARMACEUTICAL_DOSE_SR, PATIENT_RADIATION_DOSE_SR]},
            _text("SeriesDescription", r"(?i).*(dose (report|info)|patient protocol).*"),
        ]}},
        {"name": "secondary or reformat", "when": {"any": [
            {"tag": "ImageType", "contains_any": [
                "SECONDARY", "REFORMATTED", "MPR", "MIP", "PROJECTION IMAGE", "CURVED"]},
            {"tag": "SOPClassUID", "contains": SECONDARY_CAPTURE},
        ]}},
        {"name": "non-image object", "when": {
            "tag": "Modality", "in": ["SR", "PR", "KO", "SEG", "RTSTRUCT", "REG", "DOC", "OT"]}},
    ]
    return [Exclusion.model_validate(item) for item in raw]


FRACTURE_RULE: dict[str, Any] = {
    "name": "fracture-radiograph", "pipeline": "fracture", "priority": Priority.ROUTINE,
    "quiet_period_s": 10, "when": {"all": [
        {"tag": "Modality", "in": ["CR", "DX"]},
        {"tag": "SOPClassUID", "contains_any": [
            CR_IMAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING]},
    ]}}


def default_rules() -> list[RoutingRule]:
    """Each pipeline definition's own default rule (stroke, ICH), then fracture's (no model
    yet). Each head/brain test accepts BodyPartExamined or the descriptions, because
    BodyPartExamined is often absent (it is Type 3, PS3.3 C.7.3.1)."""
    from workers.pipelines.ich import ICH
    from workers.pipelines.stroke import STROKE

    return [RoutingRule.model_validate(dict(rule))
            for rule in (STROKE.rule, ICH.rule, FRACTURE_RULE)]


ICH_FACTORY = "workers.pipelines.ich:IchPipeline"


NO_MODEL_FACTORY = "workers.pipelines.unavailable:NoModelPipeline"
STROKE_FACTORY = "workers.pipelines.stroke:StrokePipeline"


def default_pipelines() -> dict[str, PipelineSpec]:
    """ich runs the committed demo model (`models/ich-demo`, version 0.1.0); stroke the
    ADC-threshold ischaemic core (`models/stroke-adc-threshold`, rule-based, 0.1.0); fracture
    has no model yet, so each study routed to it gets a delivered "not analysed: no model is
    installed" report (never a silent success). `noop` is for wiring tests and the queue
    benchmark; no default rule routes to it."""
    return {
        "ich": PipelineSpec(factory=ICH_FACTORY, model_version="0.1.0",
                            options={"model": "ich-demo"}),
        "stroke": PipelineSpec(factory=STROKE_FACTORY, model_version="0.1.0",
                               options={"model": "stroke-adc-threshold"}),
        "fracture": PipelineSpec(factory=NO_MODEL_FACTORY, model_version="fracture-none-1"),
        "noop": PipelineSpec(model_version="noop-1"),
    }


class WorkersConfig(BaseModel):
    """Settings of routing, the job queue and workers.

    `broker_url` None means the embedded transport: a worker thread inside the node claims
    queued jobs from the database. Otherwise Celery over that broker (Redis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker_url: str | None = None
    result_backend: str | None = None
    broker_transport_options: dict[str, Any] = Field(default_factory=dict)
    broker_connect_timeout_s: float = Field(default=3.0, gt=0)
    visibility_timeout_s: float = Field(default=7200.0, gt=0)
    queues: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1)
    soft_time_limit_s: float = Field(default=900.0, gt=0)
    hard_time_limit_s: float = Field(default=1200.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    retry_backoff_s: float = Field(default=30.0, ge=0)
    retry_backoff_max_s: float = Field(default=1800.0, ge=0)
    resend_after_s: float = Field(default=600.0, gt=0)
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    embedded_threads: int = Field(default=1, ge=1)
    embedded_poll_s: float = Field(default=0.5, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    default_quiet_period_s: float = Field(default=10.0, ge=0)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=default_pipelines)
    rules: list[RoutingRule] = Field(default_factory=default_rules)
    exclusions: list[Exclusion] = Field(default_factory=default_exclusions)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @model_validator(mode="after")
    def _consistent(self) -> WorkersConfig:
        if self.hard_time_limit_s <= self.soft_time_limit_s:
            raise ValueError("hard_time_limit_s must exceed soft_time_limit_s")
        if self.broker_url and self.visibility_timeout_s <= self.hard_time_limit_s:
            # otherwise the broker re-delivers a task that is still legitimately running
            raise ValueError("visibility_timeout_s must exceed hard_time_limit_s")
        unknown = {r.pipeline for r in self.rules} - set(self.pipelines)
        if unknown:
            raise ValueError(f"rules name unknown pipelines: {sorted(unknown)}")
        unserved = set(self.queues) - set(self.pipelines)
        if unserved:
            raise ValueError(f"queues name unknown pipelines: {sorted(unserved)}")
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique")
        return self

    def served_pipelines(self) -> list[str]:
        """The pipelines a worker of this node serves when no queue list is given."""
        return list(self.queues) or list(self.pipelines)
