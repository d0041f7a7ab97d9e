"""What the console's pages show, read from the tables of each package (read-only queries;
actions go through workers.admin and workers.outbox.admin, as the CLI's do)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from dicom_node.index.tables import instances, series, studies
from workers.db import as_utc, job_attempts, jobs
from workers.monitoring.tables import reader_feedback
from workers.outbox.tables import deliveries, outputs

#: the PS3.6 keywords the console reads from a stored header; shown only to operators and admins
PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


def _utc(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


# ------------------------------------------------------------------------------------ overview


@dataclass
class Overview:
    per_minute: list[tuple[str, int]]
    studies_waiting: int
    jobs_by_state: list[tuple[str, str, int]]
    queue_depth: int
    oldest_queued_s: float | None
    deliveries: list[tuple[str, str, int]]
    spool_free_bytes: int | None
    spool_total_bytes: int | None
    workers: list[dict[str, Any]]
    models: list[tuple[str, str]]
    totals: dict[str, int] = field(default_factory=dict)


def overview(engine: Engine, spool_dir: Path, models: Sequence[tuple[str, str]],
             now: datetime, minutes: int = 30) -> Overview:
    """The node's state for the Overview page; `models`: (pipeline, model version)."""
    since = now - timedelta(minutes=minutes)
    with engine.connect() as conn:
        received = [as_utc(r[0]) for r in conn.execute(
            sa.select(instances.c.received_at).where(instances.c.received_at >= since))]
        waiting = conn.execute(sa.select(sa.func.count()).select_from(studies).where(
            studies.c.state != "emitted")).scalar_one()
        by_state = [(str(p), str(s), int(n)) for p, s, n in conn.execute(
            sa.select(jobs.c.pipeline, jobs.c.state, sa.func.count())
            .group_by(jobs.c.pipeline, jobs.c.state).order_by(jobs.c.pipeline, jobs.c.state))]
        queued = conn.execute(sa.select(sa.func.count(), sa.func.min(jobs.c.queued_at)).where(
            jobs.c.state == "queued")).one()
        backlog = [(str(d), str(s), int(n)) for d, s, n in conn.execute(
            sa.select(deliveries.c.destination, deliveries.c.state, sa.func.count())
            .where(deliveries.c.state != "delivered")
            .group_by(deliveries.c.destination, deliveries.c.state)
            .order_by(deliveries.c.destination, deliveries.c.state))]
        workers = [dict(r) for r in conn.execute(
            sa.select(job_attempts.c.worker, sa.func.max(job_attempts.c.started_at).label("last"),
                      sa.func.count().label("attempts"))
            .where(job_attempts.c.worker.is_not(None))
            .group_by(job_attempts.c.worker).order_by(job_attempts.c.worker)).mappings()]
        running = {r[0]: _utc(r[1]) for r in conn.execute(
            sa.select(jobs.c.worker, jobs.c.lease_until).where(jobs.c.state == "running"))}
        totals = {
            "studies": conn.execute(sa.select(sa.func.count()).select_from(studies)).scalar_one(),
            "instances": conn.execute(
                sa.select(sa.func.count()).select_from(instances)).scalar_one(),
        }
    buckets: dict[str, int] = {}
    for m in range(minutes - 1, -1, -1):
        buckets[(now - timedelta(minutes=m)).strftime("%H:%M")] = 0
    for at in received:
        if at is not None:
            key = at.strftime("%H:%M")
            if key in buckets:
                buckets[key] += 1
    for w in workers:
        w["last"] = _utc(w["last"])
        w["lease_until"] = running.get(w["worker"])
    free: int | None
    total: int | None
    try:
        usage = shutil.disk_usage(next(p for p in [spool_dir, *spool_dir.parents] if p.exists()))
        free, total = usage.free, usage.total
    except (OSError, StopIteration):
        free = total = None
    oldest = _utc(queued[1])
    return Overview(
        per_minute=list(buckets.items()), studies_waiting=int(waiting), jobs_by_state=by_state,
        queue_depth=int(queued[0]),
        oldest_queued_s=(now - oldest).total_seconds() if oldest else None,
        deliveries=backlog, spool_free_bytes=free, spool_total_bytes=total, workers=workers,
        models=list(models), totals={k: int(v) for k, v in totals.items()})


# ------------------------------------------------------------------------------------- studies


@dataclass(frozen=True)
class StudyFilter:
    accession: str = ""
    date_from: str = ""  # YYYYMMDD or YYYY-MM-DD
    date_to: str = ""
    modality: str = ""
    pipeline: str = ""
    result: str = ""     # positive | negative | not_analysed
    state: str = ""      # a job state, or a study state (receiving, ready, emitted)


def _date(text: str) -> str:
    return text.replace("-", "").strip()[:8]


def search_studies(engine: Engine, f: StudyFilter, limit: int = 200) -> list[dict[str, Any]]:
    """Studies, newest first, with their modalities and jobs (pipeline, state, result)."""
    q = sa.select(studies).order_by(studies.c.last_received_at.desc()).limit(limit)
    if f.accession:
        q = q.where(studies.c.accession_number == f.accession.strip())
    if f.date_from:
        q = q.where(studies.c.study_date >= _date(f.date_from))
    if f.date_to:
        q = q.where(studies.c.study_date <= _date(f.date_to))
    if f.modality:
        q = q.where(studies.c.study_instance_uid.in_(
            sa.select(series.c.study_instance_uid).where(
                series.c.modality == f.modality.strip().upper())))
    if f.pipeline:
        q = q.where(studies.c.study_instance_uid.in_(
            sa.select(jobs.c.study_instance_uid).where(jobs.c.pipeline == f.pipeline)))
    if f.state in ("receiving", "ready", "emitted"):
        q = q.where(studies.c.state == f.state)
    elif f.state:
        q = q.where(studies.c.study_instance_uid.in_(
            sa.select(jobs.c.study_instance_uid).where(jobs.c.state == f.state)))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
        uids = [r["study_instance_uid"] for r in rows]
        modalities: dict[str, set[str]] = {}
        for uid, modality in conn.execute(sa.select(
                series.c.study_instance_uid, series.c.modality).where(
                series.c.study_instance_uid.in_(uids))):
            modalities.setdefault(uid, set()).add(modality or "?")
        job_rows: dict[str, list[dict[str, Any]]] = {}
        for j in conn.execute(sa.select(
                jobs.c.study_instance_uid, jobs.c.pipeline, jobs.c.state, jobs.c.result,
                jobs.c.outcome).where(jobs.c.study_instance_uid.in_(uids),
                                      jobs.c.state != "superseded")).mappings():
            job_rows.setdefault(j["study_instance_uid"], []).append(
                {"pipeline": j["pipeline"], "state": j["state"],
                 "result": result_label(j["result"], j["outcome"])})
    found = []
    for r in rows:
        r["modalities"] = sorted(modalities.get(r["study_instance_uid"], ()))
        r["jobs"] = job_rows.get(r["study_instance_uid"], [])
        r["last_received_at"] = _utc(r["last_received_at"])
        if f.result and not any(j["result"][0] == f.result for j in r["jobs"]):
            continue
        found.append(r)
    return found


def result_label(result: Any, outcome: str | None) -> tuple[str, str]:
    """(positive | negative | not_analysed | indeterminate | none, a short text) of a job's
    result."""
    if not isinstance(result, dict):
        return ("none", "")
    summary = result.get("summary") or {}
    if outcome == "not_analysed" or summary.get("not_analysed"):
        return ("not_analysed", str(summary.get("not_analysed") or "not analysed"))
    if outcome == "indeterminate" or summary.get("indeterminate"):
        return ("indeterminate", "indeterminate, read as usual: "
                + str(summary.get("indeterminate") or "see the report"))
    if summary.get("positive"):
        flag = result.get("priority_flag")
        return ("positive", f"{flag} ({summary['positive']})" if flag
                else f"positive: {summary['positive']}")
    return ("negative", "no finding")


def study_detail(engine: Engine, study_uid: str) -> dict[str, Any] | None:
    """A study with its series, jobs (each with its timeline), outputs and deliveries."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(studies).where(
            studies.c.study_instance_uid == study_uid)).mappings().first()
        if row is None:
            return None
        series_rows = [dict(r) for r in conn.execute(sa.select(series).where(
            series.c.study_instance_uid == study_uid).order_by(series.c.series_number))
            .mappings()]
        job_rows = [dict(r) for r in conn.execute(sa.select(jobs).where(
            jobs.c.study_instance_uid == study_uid).order_by(jobs.c.created_at)).mappings()]
        output_rows = [dict(r) for r in conn.execute(sa.select(outputs).where(
            outputs.c.study_instance_uid == study_uid).order_by(outputs.c.id)).mappings()]
        delivery_rows = [dict(r) for r in conn.execute(
            sa.select(deliveries, outputs.c.job_id, outputs.c.kind)
            .join(outputs, outputs.c.id == deliveries.c.output_id)
            .where(outputs.c.study_instance_uid == study_uid)
            .order_by(deliveries.c.id)).mappings()]
        first_path = conn.execute(sa.select(instances.c.path).where(
            instances.c.study_instance_uid == study_uid).limit(1)).scalar()
        verdicts = [dict(r) for r in conn.execute(
            sa.select(reader_feedback).where(reader_feedback.c.job_id.in_(
                [j["id"] for j in job_rows])).order_by(reader_feedback.c.recorded_at))
            .mappings()]
    study = dict(row)
    for job in job_rows:
        job["verdicts"] = [v for v in verdicts if v["job_id"] == job["id"]]
        job["result_label"] = result_label(job["result"], job["outcome"])
        job["timeline"] = timeline(study, job, [d for d in delivery_rows
                                                if d["job_id"] == job["id"]])
    return {"study": study, "series": series_rows, "jobs": job_rows, "outputs": output_rows,
            "deliveries": delivery_rows, "first_path": first_path}


def timeline(study: dict[str, Any], job: dict[str, Any],
             job_deliveries: Sequence[dict[str, Any]]) -> list[tuple[str, datetime | None,
                                                                      float | None]]:
    """received -> complete -> queued -> started -> run -> encoded -> delivered: (stage, when,
    seconds since the stage before). `started`: a worker took the job (the wait ends); `run`:
    the model finished; `encoded`: the outputs were written; `delivered`: every delivery of
    the job was."""
    delivered = [_utc(d["delivered_at"]) for d in job_deliveries]
    stages = [
        ("received", _utc(study.get("first_received_at"))),
        ("complete", _utc(job.get("study_completed_at"))),
        ("queued", _utc(job.get("queued_at")) or _utc(job.get("created_at"))),
        ("started", _utc(job.get("started_at"))),
        ("run", _utc(job.get("run_finished_at"))),
        ("encoded", _utc(job.get("finished_at"))),
        ("delivered", max((d for d in delivered if d is not None), default=None)
         if delivered and all(d is not None for d in delivered) else None),
    ]
    result: list[tuple[str, datetime | None, float | None]] = []
    previous: datetime | None = None
    for name, when in stages:
        took = (when - previous).total_seconds() if when and previous else None
        result.append((name, when, took))
        previous = when or previous
    return result


def patient_header(path: str | None) -> dict[str, str]:
    """The patient identifiers of one stored instance (name, ID, birth date, accession)."""
    if not path or not Path(path).is_file():
        return {}
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(PATIENT_KEYWORDS))
    except (OSError, pydicom.errors.InvalidDicomError):
        return {}
    return {k: str(ds.get(k, "") or "") for k in PATIENT_KEYWORDS}


def now_utc() -> datetime:
    return datetime.now(UTC)
