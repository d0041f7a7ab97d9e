"""Ground truth and agreement: final reports labelled by the site's rules, readers' explicit
agree / disagree, and the agreement of each model version with them (PPV, sensitivity,
specificity with Wilson score intervals) per pipeline, model version, scanner and month.

A job's truth is its final report's label when the rules decided one; otherwise the reader's
verdict (agree: the AI's answer is the truth; disagree: the opposite). Studies with neither
are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, insert, select

from hl7_fhir.labels import FinalReport, LabelRules, label_report
from workers.db import jobs
from workers.monitoring import features as feats
from workers.monitoring.aggregate import FINISHED, JobFact, job_facts
from workers.monitoring.tables import monitoring_labels, reader_feedback


def record_report(engine: Engine, report: FinalReport, rules: Mapping[str, LabelRules],
                  now: datetime) -> dict[str, bool | None]:
    """Label `report` for every pipeline that has rules and store the labels (a corrected
    report replaces the earlier labels of the same report); returns pipeline -> label.

    Raises:
        ValueError: the report has no accession number.
    """
    key = feats.accession_key(report.accession)
    if key is None:
        raise ValueError("final report without accession number")
    report_id = feats.accession_key(report.report_id) or key
    out: dict[str, bool | None] = {}
    with engine.begin() as conn:
        for pipeline, pipeline_rules in sorted(rules.items()):
            label = label_report(report, pipeline_rules)
            conn.execute(delete(monitoring_labels).where(
                monitoring_labels.c.source == report.source,
                monitoring_labels.c.report_id == report_id,
                monitoring_labels.c.pipeline == pipeline))
            conn.execute(insert(monitoring_labels).values(
                accession=key, pipeline=pipeline, source=report.source, report_id=report_id,
                positive=label.positive, rule=label.rule[:128],
                reported_at=report.reported_at, received_at=now))
            out[pipeline] = label.positive
    return out


class UnknownJob(LookupError):
    """Feedback names a job that does not exist or has no result to agree with."""


def record_feedback(engine: Engine, job_id: str, agree: bool, reader: str, now: datetime,
                    comment: str | None = None) -> None:
    """Record a reader's agree / disagree with a job's result (the latest verdict of a reader
    replaces an earlier one).

    Raises:
        UnknownJob: no finished job `job_id` with a result.
    """
    with engine.begin() as conn:
        row = conn.execute(select(jobs.c.outcome).where(
            jobs.c.id == job_id, jobs.c.state.in_(FINISHED))).first()
        if row is None or row.outcome != "result":
            raise UnknownJob(f"no finished job {job_id} with a result")
        conn.execute(delete(reader_feedback).where(reader_feedback.c.job_id == job_id,
                                                   reader_feedback.c.reader == reader[:64]))
        conn.execute(insert(reader_feedback).values(
            job_id=job_id, agree=agree, reader=reader[:64],
            comment=(comment or None) and comment[:2000], recorded_at=now))


def wilson(successes: int, total: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95% by default); None when `total` is 0."""
    if total == 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Agreement:
    """Confusion counts of one group and the figures derived from them."""

    pipeline: str
    model_version: str
    scanner: str
    month: str
    tp: int
    fp: int
    fn: int
    tn: int

    @staticmethod
    def _ratio(a: int, b: int) -> float | None:
        return a / (a + b) if a + b else None

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def ppv(self) -> float | None:
        return self._ratio(self.tp, self.fp)

    @property
    def sensitivity(self) -> float | None:
        return self._ratio(self.tp, self.fn)

    @property
    def specificity(self) -> float | None:
        return self._ratio(self.tn, self.fp)

    def intervals(self) -> dict[str, tuple[float, float] | None]:
        return {"ppv": wilson(self.tp, self.tp + self.fp),
                "sensitivity": wilson(self.tp, self.tp + self.fn),
                "specificity": wilson(self.tn, self.tn + self.fp)}


GROUPINGS = ("pipeline", "model_version", "scanner", "month")


def agreement(engine: Engine, start: datetime, end: datetime,
              by: Iterable[str] = GROUPINGS) -> list[Agreement]:
    """Agreement of the results of jobs finished in [start, end) with their truth, grouped by
    the names in `by` (a subset of GROUPINGS; the others are reported as "*")."""
    keys = set(by)
    facts, labels, verdicts = _facts_and_truths(engine, start, end)
    counts: dict[tuple[str, str, str, str], list[int]] = {}
    for fact in facts:
        predicted = bool(fact.positive)
        truth = _truth(fact, labels, verdicts)
        if truth is None:
            continue
        group = (fact.pipeline if "pipeline" in keys else "*",
                 fact.model_version if "model_version" in keys else "*",
                 str(fact.features.get("scanner") or "unknown") if "scanner" in keys else "*",
                 f"{fact.finished_at:%Y-%m}" if "month" in keys else "*")
        cell = counts.setdefault(group, [0, 0, 0, 0])
        cell[(0 if truth else 1) if predicted else (2 if truth else 3)] += 1
    return [Agreement(*group, *cell) for group, cell in sorted(counts.items())]


def _facts_and_truths(engine: Engine, start: datetime, end: datetime
                      ) -> tuple[list[JobFact], dict[tuple[str, str], bool], dict[str, bool]]:
    """Analysed jobs finished in [start, end), labels by (pipeline, accession key), and
    readers' verdicts by job id (the latest of each wins)."""
    with engine.connect() as conn:
        facts = [f for f in job_facts(conn, start, end) if f.outcome == "result"]
        labels: dict[tuple[str, str], bool] = {}
        for row in conn.execute(select(
                monitoring_labels.c.accession, monitoring_labels.c.pipeline,
                monitoring_labels.c.positive).where(monitoring_labels.c.positive.is_not(None))
                .order_by(monitoring_labels.c.received_at, monitoring_labels.c.id)):
            labels[(row.pipeline, row.accession)] = bool(row.positive)
        verdicts: dict[str, bool] = {}
        for verdict in conn.execute(select(reader_feedback.c.job_id, reader_feedback.c.agree)
                                    .order_by(reader_feedback.c.recorded_at)):
            verdicts[verdict.job_id] = bool(verdict.agree)
    return facts, labels, verdicts


def _truth(fact: JobFact, labels: Mapping[tuple[str, str], bool],
           verdicts: Mapping[str, bool]) -> bool | None:
    truth = labels.get((fact.pipeline, str(fact.features.get("accession"))))
    if truth is None and fact.job_id in verdicts:
        predicted = bool(fact.positive)
        truth = predicted if verdicts[fact.job_id] else not predicted
    return truth


def labelled_jobs(engine: Engine, pipeline: str, start: datetime, end: datetime
                  ) -> list[tuple[JobFact, bool]]:
    """The analysed jobs of `pipeline` finished in [start, end) that have a truth, with it."""
    facts, labels, verdicts = _facts_and_truths(engine, start, end)
    out = []
    for fact in facts:
        truth = _truth(fact, labels, verdicts) if fact.pipeline == pipeline else None
        if truth is not None:
            out.append((fact, truth))
    return out
