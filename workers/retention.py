"""Retention on the workers' side: which studies' work has ended (jobs and deliveries are this
package's facts), and deleting their output files and orphaned output files.

A study's work has ended when every job of it is `succeeded`, `failed` (permanent: its "not
analysed" report was made) or `superseded`, and every delivery of its outputs is `delivered`.
A queued or running job, a dead-lettered job (attempts exhausted: an operator may replay it and
it needs the images) or a pending or dead delivery (an operator may replay it and it needs the
file) keeps the study. The end is the latest of its last instance, its jobs' ends and its
deliveries'; it may go `RetentionConfig.days` after that (per-pipeline overrides, the longest
wins). Outputs rows stay (their UIDs keep re-runs idempotent); only the files go.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

from workers.config import RetentionConfig
from workers.db import as_utc, jobs
from workers.messages import JobState
from workers.outbox.tables import DELIVERED, deliveries, outputs

ENDED_JOB_STATES = frozenset({JobState.SUCCEEDED.value, JobState.FAILED.value,
                              JobState.SUPERSEDED.value})
"""Job states after which a study may be deleted; any other state keeps it."""


@dataclass(frozen=True)
class Due:
    """A study whose retention period has run out."""

    study_instance_uid: str
    ended_at: datetime
    keep_days: float


@dataclass(frozen=True)
class Kept:
    """A study retention keeps, and why (a fixed reason, no PHI)."""

    study_instance_uid: str
    reason: str


def _days(policy: RetentionConfig, pipelines: Iterable[str]) -> float | None:
    """The days a study routed to `pipelines` is kept; None: kept for good."""
    names = set(pipelines)
    if not names:
        return policy.days
    found: list[float] = []
    for name in names:
        days = policy.pipelines[name] if name in policy.pipelines else policy.days
        if days is None:
            return None
        found.append(days)
    return max(found)


def judge(engine: Engine, policy: RetentionConfig, studies: Sequence[tuple[str, datetime]],
          now: datetime) -> tuple[list[Due], list[Kept]]:
    """Splits `studies` ((Study Instance UID, last instance received at), complete and live)
    into those due for deletion at `now` and those kept, with the reason."""
    due: list[Due] = []
    kept: list[Kept] = []
    for uid, last_received in studies:
        verdict = _judge_one(engine, policy, uid, as_utc(last_received) or last_received, now)
        if isinstance(verdict, Due):
            due.append(verdict)
        else:
            kept.append(verdict)
    return due, kept


def _judge_one(engine: Engine, policy: RetentionConfig, uid: str, last_received: datetime,
               now: datetime) -> Due | Kept:
    with engine.connect() as conn:
        job_rows = conn.execute(
            select(jobs.c.pipeline, jobs.c.state, jobs.c.finished_at, jobs.c.updated_at)
            .where(jobs.c.study_instance_uid == uid)).all()
        delivery_rows = conn.execute(
            select(deliveries.c.state, func.max(deliveries.c.updated_at).label("at"))
            .select_from(deliveries.join(outputs, outputs.c.id == deliveries.c.output_id))
            .where(outputs.c.study_instance_uid == uid)
            .group_by(deliveries.c.state)).all()
    for row in job_rows:
        if row.state == JobState.DEAD_LETTERED.value:
            return Kept(uid, "dead-lettered job")
        if row.state not in ENDED_JOB_STATES:
            return Kept(uid, "job not finished")
    for state, _at in delivery_rows:
        if state != DELIVERED:
            return Kept(uid, f"{state} delivery")
    days = _days(policy, (r.pipeline for r in job_rows))
    if days is None:
        return Kept(uid, "retention off")
    ends = [last_received]
    ends += [as_utc(r.finished_at or r.updated_at) or last_received for r in job_rows]
    ends += [as_utc(at) or last_received for _state, at in delivery_rows]
    ended = max(ends)
    if now - ended < timedelta(days=days):
        return Kept(uid, "within retention period")
    return Due(uid, ended, days)


def delete_outputs(engine: Engine, study_instance_uid: str, output_dir: Path) -> tuple[int, int]:
    """Deletes the output files of a study (the paths its outputs rows name, and its folder
    under `output_dir` when empty). Returns (files, bytes)."""
    with engine.connect() as conn:
        paths = conn.execute(select(outputs.c.path).where(
            outputs.c.study_instance_uid == study_instance_uid,
            outputs.c.path.is_not(None))).scalars().all()
    files = size = 0
    for text in paths:
        path = Path(text)
        try:
            size += path.stat().st_size
            path.unlink()
            files += 1
        except FileNotFoundError:
            continue
    _remove_empty_tree(output_dir / study_instance_uid, output_dir)
    return files, size


def sweep_orphan_outputs(engine: Engine, output_dir: Path, now: datetime,
                         grace_s: float) -> int:
    """Removes files under `output_dir` that no outputs row names and that are older than
    `grace_s` (a job writes its files before it records them; a crash in between, or a job
    that failed after writing, leaves such files). Returns how many."""
    if not output_dir.is_dir():
        return 0
    with engine.connect() as conn:
        known = {os.path.realpath(p) for p in conn.execute(
            select(outputs.c.path).where(outputs.c.path.is_not(None))).scalars()}
    limit = now.timestamp() - grace_s
    removed = 0
    emptied: set[str] = set()
    for folder, _dirs, names in os.walk(output_dir):
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.path.realpath(path) not in known and os.stat(path).st_mtime < limit:
                    os.unlink(path)
                    removed += 1
                    emptied.add(folder)
            except FileNotFoundError:
                continue
    for entry in output_dir.iterdir():
        if entry.is_dir():
            _remove_empty_tree(entry, output_dir, older_than=limit, emptied=emptied)
    return removed


def _remove_empty_tree(top: Path, stop: Path, older_than: float | None = None,
                       emptied: set[str] | None = None) -> None:
    """Removes the empty folders of `top` (deepest first). With `older_than`, only folders
    not changed since then (a job may have just made one to write into) or changed by this
    sweep (`emptied`, or a sub-folder removed)."""
    if not top.is_dir() or top.resolve() == stop.resolve():
        return
    touched = set(emptied or ())
    for folder, _dirs, _files in os.walk(top, topdown=False):
        try:
            if (older_than is None or folder in touched
                    or os.stat(folder).st_mtime < older_than):
                os.rmdir(folder)
                touched.add(os.path.dirname(folder))
        except OSError:
            continue  # not empty
