"""Typed, frozen messages of the job layer: what a job is, what a pipeline receives and what it
returns. They carry identifiers and paths, never pixels, and a schema version so that a worker
of another release can refuse what it does not understand."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from dicom_node.events import SeriesSummary

SCHEMA_VERSION = 1


class JobState(StrEnum):
    """States of a job row. `queued -> running -> succeeded | failed | dead_lettered`; a
    transient failure returns the job to `queued` until its attempts run out, and so does a
    worker that stops mid-job (its budget raised by that attempt, up to three times a run);
    `superseded` marks the job of a study that was amended after it was created."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    SUPERSEDED = "superseded"


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD_LETTERED, JobState.SUPERSEDED}
)


class Priority(StrEnum):
    """Worklist urgency of a job; `stat` jobs go to a queue served before the routine one."""

    STAT = "stat"
    ROUTINE = "routine"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION


def job_key(study_instance_uid: str, pipeline: str, model_version: str) -> str:
    """The idempotency key of a job. Output UIDs derive from it, so a re-run of the same study
    with the same model replaces its earlier outputs instead of adding new ones."""
    return f"{study_instance_uid}|{pipeline}|{model_version}"


class Job(_Message):
    """One row of the jobs table as the rest of the node sees it."""

    id: str
    study_instance_uid: str
    pipeline: str
    model_version: str
    amendment: int
    state: JobState
    priority: Priority
    queue: str
    attempts: int
    series_instance_uids: tuple[str, ...]
    created_at: datetime
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    started_at: datetime | None = None
    run_finished_at: datetime | None = None
    finished_at: datetime | None = None
    not_before: datetime | None = None
    last_error: str | None = None
    error_reason: str | None = None
    worker: str | None = None
    rule: str | None = None
    outcome: str | None = None
    outcome_reason: str | None = None

    @property
    def key(self) -> str:
        return job_key(self.study_instance_uid, self.pipeline, self.model_version)


class JobContext(_Message):
    """What a pipeline receives for one attempt of one job."""

    job_id: str
    attempt: int
    study_instance_uid: str
    pipeline: str
    model_version: str
    series: tuple[SeriesSummary, ...]
    device: str = "cpu"
    amendment: int = 0
    """Which completion of the study this job answers (0 the first; a late series makes 1, 2...)."""

    @property
    def key(self) -> str:
        return job_key(self.study_instance_uid, self.pipeline, self.model_version)

    def output_uid(self, root: str, label: str) -> str:
        """A UID under `root` that depends only on the job key and `label` (PS3.5 9.1: at most
        64 characters, digits and dots, no leading zero in a component), so that a re-run
        produces the same UIDs and replaces its earlier outputs."""
        if not root.endswith("."):
            root += "."
        digest = int.from_bytes(hashlib.sha256(f"{self.key}|{label}".encode()).digest()[:16])
        return (root + str(digest))[:64].rstrip(".")


class OutputRef(_Message):
    """One object a pipeline produced and stored (SEG, SR, KOS, FHIR bundle...)."""

    kind: str
    uid: str
    path: str | None = None


class ReportOutcome(StrEnum):
    """What the reader was told about a study (DESIGN.md: every routed study ends with one
    of these, delivered): the model's `result`, `not_analysed` with a reason, or
    `indeterminate` with a reason (input quality gate or uncertainty check failed)."""

    RESULT = "result"
    NOT_ANALYSED = "not_analysed"
    INDETERMINATE = "indeterminate"


class PipelineResult(_Message):
    """What a pipeline returns: stored outputs and a few summary values for the job record.
    `reason` is the short code of a not-analysed outcome (a metric label, no PHI)."""

    outputs: tuple[OutputRef, ...] = ()
    summary: dict[str, str | int | float | bool] = Field(default_factory=dict)
    priority_flag: str | None = None
    outcome: ReportOutcome = ReportOutcome.RESULT
    reason: str | None = Field(default=None, max_length=64)


def queue_name(pipeline: str, priority: Priority | str) -> str:
    """Broker queue of a pipeline: `<pipeline>.stat` for stat jobs, `<pipeline>` otherwise.
    Each pipeline has its own pair so a GPU host serving only `ich` never receives stroke work,
    and a worker lists every stat queue before the routine ones to serve them first."""
    return f"{pipeline}.stat" if Priority(priority) is Priority.STAT else pipeline
