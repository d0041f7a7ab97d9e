"""What the receive path refused or set aside, for an operator to list (no PHI: UIDs, status
codes, reason codes and fixed reasons only)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Engine, insert, select

from dicom_node.index.tables import ingest_conflicts, ingest_failures
from dicom_node.index.values import fit

R = TypeVar("R")


@dataclass(frozen=True)
class FailureRecord:
    """A refused instance: the status answered, why, and where its bytes were kept."""

    calling_ae: str | None
    peer_address: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    status: int
    reason_code: str
    reason: str
    kept_path: str | None = None


@dataclass(frozen=True)
class ConflictRecord:
    """A second instance under an indexed SOP Instance UID with other content (set aside)."""

    calling_ae: str | None
    peer_address: str | None
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    differences: str
    status: int
    kept_path: str | None
    indexed_path: str


@dataclass(frozen=True)
class Listed(Generic[R]):
    """One stored record with its row id and time."""

    id: int
    at: datetime
    record: R


def record_failure(engine: Engine, record: FailureRecord, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ingest_failures).values(
            fit(ingest_failures, {"at": at, **vars(record)})))


def record_conflict(engine: Engine, record: ConflictRecord, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ingest_conflicts).values(
            fit(ingest_conflicts, {"at": at, **vars(record)})))


def list_failures(engine: Engine, limit: int = 100) -> list[Listed[FailureRecord]]:
    """The most recent refusals first."""
    names = [f.name for f in fields(FailureRecord)]
    with engine.connect() as conn:
        rows = conn.execute(select(ingest_failures).order_by(
            ingest_failures.c.id.desc()).limit(limit)).mappings().all()
    return [Listed(r["id"], r["at"], FailureRecord(**{n: r[n] for n in names})) for r in rows]


def list_conflicts(engine: Engine, limit: int = 100) -> list[Listed[ConflictRecord]]:
    """The most recent conflicting duplicates first."""
    names = [f.name for f in fields(ConflictRecord)]
    with engine.connect() as conn:
        rows = conn.execute(select(ingest_conflicts).order_by(
            ingest_conflicts.c.id.desc()).limit(limit)).mappings().all()
    return [Listed(r["id"], r["at"], ConflictRecord(**{n: r[n] for n in names})) for r in rows]
