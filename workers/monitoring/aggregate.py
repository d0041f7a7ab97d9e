"""Daily monitoring aggregates per pipeline and model version, from the jobs table.

Each finished job's row says what the reader was told (outcome and not-analysed reason) and
carries the monitoring facts the runner recorded (`features`): score, positive classes, scanner,
kernel, slice thickness, pixel spacing, intensity statistics. `aggregate_day` folds one UTC
day's jobs into a `monitoring_daily` row (idempotent: recomputing a day replaces its row), with
input counts binned as the model version's reference bins them, and the PSI of each feature
over a trailing window of days (one day of a small site is too few studies for a stable PSI).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, select

from workers.db import as_utc, jobs
from workers.messages import JobState
from workers.monitoring import features as feats
from workers.monitoring.reference import MISSING, Reference, psi
from workers.monitoring.tables import SCORE_EDGES, monitoring_daily

ReferenceLookup = Callable[[str, str], Reference | None]
"""(pipeline, model version) -> the reference captured at validation, or None."""

FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.DEAD_LETTERED.value)


@dataclass(frozen=True)
class JobFact:
    """What monitoring needs of one finished job."""

    job_id: str
    pipeline: str
    model_version: str
    finished_at: datetime
    outcome: str  # result | not_analysed | failed
    reason: str | None
    positive: bool | None
    features: Mapping[str, Any]


def job_facts(conn: Connection, start: datetime, end: datetime) -> Iterator[JobFact]:
    """Finished jobs with `start <= finished_at < end`."""
    rows = conn.execute(select(
        jobs.c.id, jobs.c.pipeline, jobs.c.model_version, jobs.c.finished_at, jobs.c.state,
        jobs.c.outcome, jobs.c.outcome_reason, jobs.c.error_reason, jobs.c.result,
    ).where(jobs.c.state.in_(FINISHED), jobs.c.finished_at >= start,
            jobs.c.finished_at < end).order_by(jobs.c.finished_at, jobs.c.id)).mappings()
    for row in rows:
        summary = (row["result"] or {}).get("summary") or {}
        outcome = row["outcome"] or "failed"
        positive = (bool(str(summary.get("positive") or "").strip())
                    if outcome == "result" else None)
        yield JobFact(job_id=row["id"], pipeline=row["pipeline"],
                      model_version=row["model_version"],
                      finished_at=as_utc(row["finished_at"]) or row["finished_at"],
                      outcome=outcome, reason=row["outcome_reason"] or row["error_reason"],
                      positive=positive, features=feats.decode(summary))


def _score_bin(score: float) -> str:
    for i in range(len(SCORE_EDGES) - 2, -1, -1):
        if score >= SCORE_EDGES[i]:
            return f"{SCORE_EDGES[i]:.1f}"
    return f"{SCORE_EDGES[0]:.1f}"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def summarise(facts: Sequence[JobFact], reference: Reference | None) -> dict[str, Any]:
    """The counts of one pipeline / model version's jobs (one day)."""
    results = [f for f in facts if f.outcome == "result"]
    not_analysed = Counter(
        (f.reason or "unknown") if f.outcome in ("not_analysed", "failed")
        else f"{f.outcome}:{f.reason or 'unknown'}" for f in facts if f.outcome != "result")
    scores = Counter(_score_bin(float(f.features["score"])) for f in results
                     if f.features.get("score") is not None)
    inputs: dict[str, dict[str, int]] = {}
    for name in feats.FEATURES:
        counter: Counter[str] = Counter()
        for fact in results:
            value = fact.features.get(name)
            if reference is not None and name in reference.features:
                counter[reference.features[name].bin(value)] += 1
            elif name in feats.CATEGORICAL:
                counter[str(value) if value not in (None, "") else MISSING] += 1
        if counter:
            inputs[name] = dict(counter)
    return {"jobs": len(facts), "results": len(results),
            "positives": sum(1 for f in results if f.positive),
            "not_analysed": dict(not_analysed), "scores": dict(scores), "inputs": inputs}


def aggregate_day(engine: Engine, day: date, references: ReferenceLookup, now: datetime, *,
                  window_days: int = 7, min_window_results: int = 50) -> list[dict[str, Any]]:
    """Compute and store the `monitoring_daily` rows of `day` (UTC), one per pipeline and
    model version that finished jobs that day; returns them.

    PSI per feature is over the `window_days` days ending with `day` (their stored input
    counts summed), against the reference of that model version; no PSI without a reference or
    with fewer than `min_window_results` analysed studies in the window."""
    start, end = _day_bounds(day)
    with engine.begin() as conn:
        groups: dict[tuple[str, str], list[JobFact]] = {}
        for fact in job_facts(conn, start, end):
            groups.setdefault((fact.pipeline, fact.model_version), []).append(fact)
        conn.execute(delete(monitoring_daily).where(monitoring_daily.c.day == day))
        out = []
        for (pipeline, version), facts in sorted(groups.items()):
            reference = references(pipeline, version)
            row = {"day": day, "pipeline": pipeline, "model_version": version,
                   **summarise(facts, reference), "psi": {}, "computed_at": now}
            conn.execute(insert(monitoring_daily).values(**row))
            row["psi"] = _window_psi(conn, pipeline, version, day, reference, window_days,
                                     min_window_results)
            conn.execute(monitoring_daily.update().where(
                monitoring_daily.c.day == day, monitoring_daily.c.pipeline == pipeline,
                monitoring_daily.c.model_version == version).values(psi=row["psi"]))
            out.append(row)
        return out


def _window_psi(conn: Connection, pipeline: str, version: str, day: date,
                reference: Reference | None, window_days: int,
                min_results: int) -> dict[str, float]:
    if reference is None:
        return {}
    rows = conn.execute(select(monitoring_daily.c.results, monitoring_daily.c.inputs).where(
        and_(monitoring_daily.c.pipeline == pipeline,
             monitoring_daily.c.model_version == version,
             monitoring_daily.c.day > day - timedelta(days=window_days),
             monitoring_daily.c.day <= day))).all()
    if sum(r.results for r in rows) < min_results:
        return {}
    summed: dict[str, Counter[str]] = {}
    for row in rows:
        for name, counts in (row.inputs or {}).items():
            summed.setdefault(name, Counter()).update(counts)
    out = {}
    for name, ref in reference.features.items():
        value = psi(ref, summed.get(name, Counter()))
        if value is not None:
            out[name] = value
    return out


def aggregate_range(engine: Engine, first: date, last: date, references: ReferenceLookup,
                    clock: Callable[[], datetime], **options: Any) -> int:
    """`aggregate_day` for every day from `first` to `last` (inclusive), in order; returns the
    number of rows written."""
    written, day = 0, first
    while day <= last:
        written += len(aggregate_day(engine, day, references, clock(), **options))
        day += timedelta(days=1)
    return written


def daily_rows(engine: Engine, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Stored daily rows, oldest first (optionally of one pipeline)."""
    query = select(monitoring_daily).order_by(monitoring_daily.c.day,
                                              monitoring_daily.c.pipeline,
                                              monitoring_daily.c.model_version)
    if pipeline is not None:
        query = query.where(monitoring_daily.c.pipeline == pipeline)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def latest_rows(engine: Engine) -> list[dict[str, Any]]:
    """The newest stored row of every pipeline and model version."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in daily_rows(engine):
        latest[(row["pipeline"], row["model_version"])] = row
    return list(latest.values())
