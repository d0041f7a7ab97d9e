"""The `workers` section of the node's settings: broker, time limits, attempts, pipelines and
routing rules. The composition root (infernode) loads it from YAML/TOML plus environment
overrides and hands it in; nothing here reads files or the environment."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

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
ICH_FACTORY = "workers.pipelines.ich:IchPipeline"
STROKE_FACTORY = "workers.pipelines.stroke:StrokePipeline"
FRACTURE_FACTORY = "workers.pipelines.fracture:FracturePipeline"
NO_MODEL_FACTORY = "workers.pipelines.unavailable:NoModelPipeline"
_MODEL_FACTORIES = {"ich": ICH_FACTORY, "stroke": STROKE_FACTORY,
                    "fracture": FRACTURE_FACTORY}


class _Spec(BaseModel):
    """How a worker builds one pipeline. `model_version` is part of the job key, so changing it
    re-runs studies. `options` holds what the node adds (index database, output folder, model
    folders, reporting settings) and, for custom factories, their own keyword options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_version: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    def factory_options(self) -> dict[str, Any]:
        """What the factory receives besides name and version: `options`, then every typed
        setting that is set (typed settings win)."""
        typed = self.model_dump(exclude={"kind", "model_version", "options", "factory"},
                                exclude_none=True)
        return {**self.options, **typed}


class ModelPipelineSpec(_Spec):
    """A clinical pipeline on the generic runner (`workers.pipelines.<kind>`): its definition
    names the default model; these settings override it per pipeline entry."""

    kind: Literal["ich", "stroke", "fracture"]
    model: str | None = Field(default=None, description="model registry id")
    critical: tuple[str, ...] | None = Field(
        default=None, description="class keys whose positive result raises the priority signal")
    critical_volume_ml: dict[str, float] | None = Field(
        default=None, description="mask key -> volume (mL) that raises the priority signal")
    critical_probability: dict[str, float] | None = Field(
        default=None, description="class key -> probability at or above which its positive "
        "result raises the priority signal (default: any positive result)")
    large_core_ml: float | None = Field(
        default=None, gt=0, description="stroke: a core at or above this volume (mL) is worded "
        "as a large core (default 70)")
    warmup: bool | None = Field(default=None, description="one forward pass when loaded")
    views: bool | None = Field(
        default=None, description="write the overlay series and the GSPS of a positive result "
        "(default true; docs/OVERLAYS.md)")
    predict: dict[str, Any] | None = Field(
        default=None, description="extra keyword arguments for the model (e.g. n_models)")

    @property
    def factory(self) -> str:
        return _MODEL_FACTORIES[self.kind]


class NoModelSpec(_Spec):
    """A routed pipeline without a model: every study gets a "not analysed" report."""

    kind: Literal["no_model"]
    report_as: Literal["ich", "stroke", "fracture"] | None = Field(
        default=None, description="report family (target finding); default the pipeline name")

    @property
    def factory(self) -> str:
        return NO_MODEL_FACTORY

    def factory_options(self) -> dict[str, Any]:
        options = super().factory_options()
        if "report_as" in options:
            options["pipeline_kind"] = options.pop("report_as")
        return options


class NoopSpec(_Spec):
    """The no-op pipeline (wiring tests, the queue benchmark): reports nothing."""

    kind: Literal["noop"] = "noop"
    model_version: str = Field(default="noop-1", min_length=1)
    sleep_s: float | None = Field(default=None, ge=0)
    fail: Literal["transient", "permanent"] | None = None
    fail_flag: str | None = None
    record_dir: str | None = None

    @property
    def factory(self) -> str:
        return NOOP_FACTORY


class CustomSpec(_Spec):
    """Any other factory: `module:callable` taking `(device: str, options: dict)` and
    returning a `workers.registry.Pipeline`."""

    kind: Literal["custom"] = "custom"
    factory: str = Field(pattern=r"^[\w.]+:\w+$")


def _spec_kind(value: Any) -> str:
    """The variant of a pipeline entry: its `kind`; an entry that names only a `factory` is
    custom, one with neither is the no-op pipeline."""
    if isinstance(value, dict):
        return str(value.get("kind") or ("custom" if "factory" in value else "noop"))
    return str(getattr(value, "kind", "noop"))


PipelineSpec = Annotated[
    Annotated[ModelPipelineSpec, Tag("ich")] | Annotated[ModelPipelineSpec, Tag("stroke")]
    | Annotated[ModelPipelineSpec, Tag("fracture")] | Annotated[NoModelSpec, Tag("no_model")]
    | Annotated[NoopSpec, Tag("noop")]
    | Annotated[CustomSpec, Tag("custom")],
    Discriminator(_spec_kind),
]
"""One entry of `workers.pipelines`, typed by its `kind` (ich, stroke, no_model, noop,
fracture, custom)."""


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


def default_rules() -> list[RoutingRule]:
    """Each pipeline definition's own default rule (stroke, ICH, fracture). Each head/brain
    test accepts BodyPartExamined or the descriptions, because BodyPartExamined is often absent
    (it is Type 3, PS3.3 C.7.3.1)."""
    from workers.pipelines.fracture import FRACTURE
    from workers.pipelines.ich import ICH
    from workers.pipelines.stroke import STROKE

    return [RoutingRule.model_validate(dict(d.rule)) for d in (STROKE, ICH, FRACTURE)]


def default_pipelines() -> dict[str, PipelineSpec]:
    """ich runs the committed demo model (`models/ich-demo`, version 0.2.0); stroke the
    ADC-threshold ischaemic core (`models/stroke-adc-threshold`, rule-based, 0.3.0); fracture
    the phantom-trained demo detector (`models/fracture-demo`, 0.1.0). `noop` is for wiring
    tests and the queue benchmark; no default rule routes to it."""
    return {
        "ich": ModelPipelineSpec(kind="ich", model_version="0.2.0", model="ich-demo"),
        "stroke": ModelPipelineSpec(kind="stroke", model_version="0.3.0",
                                    model="stroke-adc-threshold"),
        "fracture": ModelPipelineSpec(kind="fracture", model_version="0.1.0",
                                      model="fracture-demo"),
        "noop": NoopSpec(),
    }


class RetentionConfig(BaseModel):
    """When received instances and outputs are deleted (docs/OPERATIONS.md, "Retention and
    disk"). A study qualifies `days` after its work ended: every job succeeded, failed
    permanently or was superseded, and every delivery of its outputs was delivered. A study with
    a queued or running job, a dead-lettered job or a dead or pending delivery is kept until an
    operator acts. `days` None (the default) keeps studies; `pipelines` overrides it per
    pipeline (a study routed to several keeps the longest; None among them keeps it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: float | None = Field(default=None, gt=0, description="None: never delete studies")
    pipelines: dict[str, float | None] = Field(
        default_factory=dict, description="pipeline -> days (None: keep its studies)")
    interval_s: float = Field(default=3600.0, gt=0, description="seconds between sweeps")
    orphan_grace_s: float = Field(
        default=3600.0, gt=0, description="age after which a temporary spool file or an "
        "output file without an outputs row is an orphan")
    rejected_days: float | None = Field(
        default=None, gt=0, description="kept refused instances older than this are deleted "
        "(default: `days`)")


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
    # seconds a running embedded job gets to finish at shutdown before it is handed back to
    # the queue: `infernode serve` must exit within 10 s of SIGTERM
    embedded_stop_grace_s: float = Field(default=2.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    default_quiet_period_s: float = Field(default=10.0, ge=0)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=default_pipelines)
    rules: list[RoutingRule] = Field(default_factory=default_rules)
    exclusions: list[Exclusion] = Field(default_factory=default_exclusions)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

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
        unkept = set(self.retention.pipelines) - set(self.pipelines)
        if unkept:
            raise ValueError(f"retention names unknown pipelines: {sorted(unkept)}")
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
