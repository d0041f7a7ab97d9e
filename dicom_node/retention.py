"""Retention on the DICOM side: deleting a study's spool files behind a tombstone, sweeping
leftovers, and the spool's free-space warning.

Which studies may go is decided elsewhere (the jobs and deliveries are the workers' facts); this
module only lists candidates (complete, live studies) and deletes what it is told to. A deleted
study keeps its `studies` row with `deleted_at` set (the tombstone: its completions count, so a
study sent again is processed as a new amendment); its series and instance rows and its files
go, so an instance that arrives later is stored and indexed like any new one. A study is live
again once an instance arrived after its tombstone (`last_received_at > deleted_at`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Engine, and_, delete, or_, select, update

from dicom_node.index.tables import instances, series, studies
from dicom_node.spool import Spool, fsync_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A complete, live study: retention may delete it once its work has ended."""

    study_instance_uid: str
    last_received_at: datetime


@dataclass(frozen=True)
class Deleted:
    """What deleting one study removed (`tombstoned` False: an instance arrived meanwhile, so
    only the files listed at the start and their rows went)."""

    study_instance_uid: str
    files: int
    bytes: int
    tombstoned: bool


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def candidates(engine: Engine, received_before: datetime) -> list[Candidate]:
    """Live studies handed over for processing (`emitted`) whose last instance arrived before
    `received_before`, oldest first. Tombstones whose study received an instance afterwards
    count as live."""
    live = or_(studies.c.deleted_at.is_(None),
               studies.c.last_received_at > studies.c.deleted_at)
    with engine.connect() as conn:
        rows = conn.execute(
            select(studies.c.study_instance_uid, studies.c.last_received_at)
            .where(studies.c.state == "emitted", live,
                   studies.c.last_received_at < received_before)
            .order_by(studies.c.last_received_at)
        ).all()
    return [Candidate(r.study_instance_uid, _utc(r.last_received_at)) for r in rows]


def delete_study(engine: Engine, spool: Spool, candidate: Candidate, now: datetime) -> Deleted:
    """Deletes the spool files of `candidate`, then (one transaction) its instance and series
    rows and sets its tombstone, unless an instance arrived after `candidate` was listed: then
    only the rows of the deleted files go and the study stays live (its new instances are
    untouched). A crash between the two steps leaves rows of missing files, which the next
    pass deletes (the study is still a candidate)."""
    uid = candidate.study_instance_uid
    with engine.connect() as conn:
        listed = conn.execute(
            select(instances.c.sop_instance_uid, instances.c.path)
            .where(instances.c.study_instance_uid == uid,
                   instances.c.received_at <= candidate.last_received_at)
        ).all()
    files = size = 0
    emptied: set[Path] = set()
    # Slots of repeated instances are removed lazily (`Spool.discard`); their removal reaches the
    # disk before the study's files and rows go, so that no power loss brings a copy back for
    # start-up recovery to index as a live study again.
    spool.flush_dirty()
    for row in listed:
        path = Path(row.path)
        try:
            size += path.stat().st_size
            path.unlink()
            files += 1
            emptied.add(path.parent)
        except FileNotFoundError:
            continue
    # The unlinks reach the disk before the rows go: otherwise a power loss could bring the
    # files back without rows, and start-up recovery would index them as a live study again.
    for folder in emptied:
        fsync_dir(folder)
    with engine.begin() as conn:
        current = conn.scalar(select(studies.c.last_received_at)
                              .where(studies.c.study_instance_uid == uid))
        unchanged = current is not None and _utc(current) <= candidate.last_received_at
        if unchanged:
            conn.execute(delete(instances).where(instances.c.study_instance_uid == uid))
            conn.execute(delete(series).where(series.c.study_instance_uid == uid))
            conn.execute(update(studies).where(studies.c.study_instance_uid == uid)
                         .values(deleted_at=now))
        else:
            sops = [r.sop_instance_uid for r in listed]
            for start in range(0, len(sops), 500):
                conn.execute(delete(instances).where(
                    instances.c.sop_instance_uid.in_(sops[start:start + 500])))
    _remove_empty_dirs(spool.root / uid, stop=spool.root)
    return Deleted(uid, files, size, unchanged)


def is_tombstoned(engine: Engine, study_instance_uid: str) -> bool:
    """True when the study's files were deleted by retention and nothing arrived since."""
    with engine.connect() as conn:
        row = conn.execute(
            select(studies.c.deleted_at, studies.c.last_received_at)
            .where(studies.c.study_instance_uid == study_instance_uid)).first()
    return (row is not None and row.deleted_at is not None
            and _utc(row.last_received_at) <= _utc(row.deleted_at))


def clear_revived(engine: Engine) -> int:
    """Clears the tombstone of studies that received an instance after it; returns how many."""
    with engine.begin() as conn:
        return conn.execute(
            update(studies)
            .where(and_(studies.c.deleted_at.is_not(None),
                        studies.c.last_received_at > studies.c.deleted_at))
            .values(deleted_at=None)
        ).rowcount


def sweep_temporary(spool: Spool, now: datetime, grace_s: float) -> int:
    """Removes files under the spool's `.tmp/` older than `grace_s` (a write interrupted by a
    crash or a failed disk; a write in progress is younger). Returns how many."""
    return _remove_older(spool.root / ".tmp", now, grace_s, recursive=False)


def sweep_rejected(spool: Spool, now: datetime, max_age_s: float) -> int:
    """Removes kept refused and conflicting instances (and their records) older than
    `max_age_s`: they carry PHI like any instance. Returns how many files went."""
    return _remove_older(spool.rejected_dir, now, max_age_s, recursive=True)


def _remove_older(folder: Path, now: datetime, age_s: float, *, recursive: bool) -> int:
    if not folder.is_dir():
        return 0
    limit = now.timestamp() - age_s
    found = folder.rglob("*") if recursive else folder.iterdir()
    removed = 0
    for path in list(found):
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _remove_empty_dirs(top: Path, stop: Path) -> None:
    """Removes `top` and the empty folders below it, deepest first (never `stop` itself)."""
    if not top.is_dir() or top.resolve() == stop.resolve():
        return
    for folder, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            continue  # not empty: a new instance arrived meanwhile


class SpoolWatch:
    """The spool's free space as Prometheus gauges, read at each scrape, beside the warning
    level (an alert fires below it) and the refusal watermark (C-STORE gets 0xA700 below it).

    Metrics: `infernode_spool_free_bytes`, `infernode_spool_warning_free_bytes`,
    `infernode_spool_min_free_bytes`.
    """

    def __init__(self, spool: Spool, warning_free_bytes: int,
                 registry: CollectorRegistry) -> None:
        self.spool = spool
        self.warning_free_bytes = warning_free_bytes
        self._warned_at = 0.0
        free = Gauge("infernode_spool_free_bytes", "Free bytes on the spool's file system",
                     registry=registry)
        free.set_function(self._free)
        Gauge("infernode_spool_warning_free_bytes",
              "Free spool bytes below which an alert should fire (configured warning level)",
              registry=registry).set(warning_free_bytes)
        Gauge("infernode_spool_min_free_bytes",
              "Free spool bytes below which every C-STORE is refused (0xA700)",
              registry=registry).set(spool.min_free_bytes)

    def _free(self) -> float:
        try:
            return float(self.spool.free_bytes())
        except OSError:
            return 0.0

    def check(self) -> bool:
        """True when free space is below the warning level; then logs a warning (at most once
        every 10 minutes)."""
        free = self._free()
        low = free < self.warning_free_bytes
        if low and time.monotonic() - self._warned_at > 600:
            self._warned_at = time.monotonic()
            log.warning("spool free space low: %d bytes free, warning level %d, refusal "
                        "below %d", int(free), self.warning_free_bytes,
                        self.spool.min_free_bytes)
        return low
