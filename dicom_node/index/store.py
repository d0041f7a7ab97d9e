"""Reads and writes the instance index. Every write is one transaction; the caller acknowledges a
C-STORE only after `record_instance` has returned (the row is committed). Every value written goes
through `values.fit`, so odd header values are stored the same way on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Dialect,
    Engine,
    Table,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from dicom_node.buffers import Received
from dicom_node.errors import CannotUnderstand
from dicom_node.index.group import GroupCommitter
from dicom_node.index.headers import InstanceHeader
from dicom_node.index.parse import PARSE_ERRORS, content_sha256
from dicom_node.index.records import (
    ConflictRecord,
    FailureRecord,
    Listed,
    list_conflicts,
    list_failures,
    record_conflict,
    record_failure,
)
from dicom_node.index.tables import ingest_conflicts, ingest_failures, instances, series, studies
from dicom_node.index.values import fit, normalise_date

log = logging.getLogger(__name__)

__all__ = [
    "ConflictRecord", "FailureRecord", "IndexStore", "Listed", "Receipt", "StoredInstance",
    "differences",
]


@dataclass(frozen=True)
class Receipt:
    """Who sent an instance and when."""

    calling_ae: str
    called_ae: str
    at: datetime


@dataclass(frozen=True)
class StoredInstance:
    """What a repeated SOP Instance UID is compared with: the indexed instance's identity."""

    study_instance_uid: str
    series_instance_uid: str
    patient_id: str | None
    transfer_syntax_uid: str
    content_sha256: str | None
    path: str


class IndexStore:
    """The index over an engine (SQLite in WAL mode or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        add_instance, upsert_study, upsert_series = _statements(engine)
        self._add_instance = _Prepared(add_instance, engine)
        self._upsert_study = _Prepared(upsert_study, engine)
        self._upsert_series = _Prepared(upsert_series, engine)
        self._count_duplicate = (
            update(instances)
            .where(instances.c.sop_instance_uid == bindparam("uid"))
            .values(duplicates=instances.c.duplicates + 1)
        )
        self._committer: GroupCommitter[_Rows, bool] = GroupCommitter(self._write)
        self.spool_is_journal = engine.dialect.name == "sqlite"
        """SQLite: an instance row is committed without its own WAL fsync (synchronous=NORMAL
        for that transaction only). The spool file it points to was fsynced before, and
        start-up recovery (`dicom_node.recovery`) indexes every spool file whose row a power
        loss took; a process crash (kill -9) loses no committed row in WAL mode either way.
        PostgreSQL keeps synchronous commits: its server can fail without the node restarting."""

    def is_stored(self, sop_instance_uid: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(instances.c.sop_instance_uid).where(
                    instances.c.sop_instance_uid == sop_instance_uid
                )
            ).first()
        return row is not None

    def stored_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        """The indexed instance under `sop_instance_uid` (with its study's Patient ID), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(instances.c.study_instance_uid, instances.c.series_instance_uid,
                       studies.c.patient_id, instances.c.transfer_syntax_uid,
                       instances.c.content_sha256, instances.c.path)
                .select_from(instances.outerjoin(
                    studies, studies.c.study_instance_uid == instances.c.study_instance_uid))
                .where(instances.c.sop_instance_uid == sop_instance_uid)
            ).first()
        return None if row is None else StoredInstance(*row)

    def count_duplicate(self, sop_instance_uid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(instances)
                .where(instances.c.sop_instance_uid == sop_instance_uid)
                .values(duplicates=instances.c.duplicates + 1)
            )

    def record_instance(
        self,
        header: InstanceHeader,
        *,
        path: str,
        size_bytes: int,
        receipt: Receipt,
        quiet_period_s: float,
    ) -> bool:
        """Indexes one stored instance and restarts its series' completion timer; returns once
        the row is committed (with the rows of other associations that arrived meanwhile: one
        transaction and one commit for all of them, `group.GroupCommitter`).

        Returns False when the SOP Instance UID was already indexed (a duplicate: counted, not
        stored again). An instance for a series that was already complete reopens the series and
        its study (a late instance: completion fires again as an amendment).
        """
        return self._committer.submit(_rows(header, path, size_bytes, receipt, quiet_period_s))

    def _write(self, batch: Sequence[_Rows]) -> list[bool]:
        """One transaction for `batch`: per instance an insert that does nothing on a known SOP
        Instance UID (then the duplicate is counted instead), and an upsert each of its study
        and series row. No exception decides anything: the rows alone do."""
        fresh: list[bool] = []
        with self.engine.connect() as conn:
            if self.spool_is_journal:
                _synchronous(conn, "NORMAL")
            try:
                with conn.begin():
                    for rows in batch:
                        added = self._add_instance.execute(conn, rows.instance).rowcount == 1
                        if added:
                            self._upsert_study.execute(conn, rows.study)
                            self._upsert_series.execute(conn, rows.series)
                        else:
                            conn.execute(self._count_duplicate, {"uid": rows.uid})
                        fresh.append(added)
            finally:
                if self.spool_is_journal:
                    _synchronous(conn, "FULL")
        return fresh

    def indexed_in_series(self, series_instance_uid: str) -> set[str]:
        """SOP Instance UIDs indexed under a series (start-up recovery compares the spool's
        folder of the series with them)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(instances.c.sop_instance_uid)
                .where(instances.c.series_instance_uid == series_instance_uid)
            ).all()
        return {r.sop_instance_uid for r in rows}

    def record_failure(self, record: FailureRecord, at: datetime) -> None:
        """Keeps why an instance was refused (no PHI: UIDs, codes and reasons only)."""
        record_failure(self.engine, record, at)

    def record_conflict(self, record: ConflictRecord, at: datetime) -> None:
        """Keeps a conflicting duplicate's record (names of what differs, never values)."""
        record_conflict(self.engine, record, at)

    def failures(self, limit: int = 100) -> list[Listed[FailureRecord]]:
        """Refused instances, most recent first (for operators)."""
        return list_failures(self.engine, limit)

    def conflicts(self, limit: int = 100) -> list[Listed[ConflictRecord]]:
        """Conflicting duplicates set aside, most recent first (for operators)."""
        return list_conflicts(self.engine, limit)

    def series_paths(self, series_instance_uid: str) -> list[str]:
        """Spool paths of a series' instances, in instance number order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(instances.c.path)
                .where(instances.c.series_instance_uid == series_instance_uid)
                .order_by(instances.c.instance_number, instances.c.sop_instance_uid)
            ).all()
        return [r.path for r in rows]

    def study_senders(self, study_instance_uid: str) -> list[str]:
        """Calling AE titles that sent series of a study, most instances first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(series.c.calling_ae, func.sum(series.c.instance_count).label("n"))
                .where(series.c.study_instance_uid == study_instance_uid,
                       series.c.calling_ae.is_not(None))
                .group_by(series.c.calling_ae)
                .order_by(func.sum(series.c.instance_count).desc(), series.c.calling_ae)
            ).all()
        return [r.calling_ae for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts for status displays."""
        with self.engine.connect() as conn:
            return {
                "studies": conn.scalar(select(func.count()).select_from(studies)) or 0,
                "series": conn.scalar(select(func.count()).select_from(series)) or 0,
                "instances": conn.scalar(select(func.count()).select_from(instances)) or 0,
                "failures": conn.scalar(select(func.count()).select_from(ingest_failures)) or 0,
                "conflicts": conn.scalar(select(func.count()).select_from(ingest_conflicts)) or 0,
            }


def _synchronous(conn: Connection, level: str) -> None:
    """Sets SQLite's `synchronous` on this pooled connection, outside any transaction (a raw
    driver call, so SQLAlchemy does not begin one for a PRAGMA)."""
    driver = conn.connection.driver_connection
    if driver is not None:
        driver.execute(f"PRAGMA synchronous={level}")


@dataclass(frozen=True, slots=True)
class _Rows:
    """The parameters of one instance's three statements."""

    uid: str
    instance: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]


def _rows(header: InstanceHeader, path: str, size_bytes: int, receipt: Receipt,
          quiet_period_s: float) -> _Rows:
    at = receipt.at
    image_type = "\\".join(header.image_type) or None
    expected = header.images_in_acquisition
    return _Rows(
        uid=header.sop_instance_uid,
        instance=fit(instances, {
            "sop_instance_uid": header.sop_instance_uid,
            "sop_class_uid": header.sop_class_uid,
            "series_instance_uid": header.series_instance_uid,
            "study_instance_uid": header.study_instance_uid,
            "instance_number": header.instance_number,
            "transfer_syntax_uid": header.transfer_syntax_uid,
            "image_type": image_type, "path": path, "size_bytes": size_bytes,
            "calling_ae": receipt.calling_ae, "received_at": at, "duplicates": 0,
        }),
        study=fit(studies, {
            "study_instance_uid": header.study_instance_uid,
            "patient_id": header.patient_id,
            "accession_number": header.accession_number,
            "study_date": normalise_date(header.study_date),
            "first_received_at": at, "last_received_at": at, "state": "receiving",
            "completions": 0,
        }),
        series=fit(series, {
            "series_instance_uid": header.series_instance_uid,
            "study_instance_uid": header.study_instance_uid,
            "modality": header.modality,
            "body_part_examined": header.body_part_examined,
            "series_description": header.series_description,
            "protocol_name": header.protocol_name,
            "image_type": image_type,
            "series_number": header.series_number,
            "slice_thickness": header.slice_thickness,
            "calling_ae": receipt.calling_ae, "called_ae": receipt.called_ae,
            "instance_count": 1,
            "expected_count": expected if expected and expected > 1 else None,
            "bytes_received": size_bytes, "first_received_at": at, "last_received_at": at,
            "quiet_period_s": quiet_period_s,
            "complete_after": at + timedelta(seconds=quiet_period_s),
            "state": "receiving", "late_instances": 0,
        }),
    )


class _Prepared:
    """A statement of `record_instance`, compiled by SQLAlchemy once for the engine's dialect and
    the (fixed) keys of its parameters, then run with `exec_driver_sql`: the same SQL, each
    parameter converted by its type's own bind processor (e.g. a datetime on SQLite), the
    literal values of the statement (ON CONFLICT ... SET state = 'receiving') filled in, and
    errors and disconnects handled by SQLAlchemy as for any statement. What it saves is the
    per-execution work on a Core statement (cache key, compiled-cache look-up, parameter
    set-up): about 20 us for each of the three statements of every received instance."""

    def __init__(self, statement: Executable, engine: Engine) -> None:
        self._statement = cast(ClauseElement, statement)
        self._dialect = engine.dialect
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def execute(self, conn: Connection, values: dict[str, Any]) -> CursorResult[Any]:
        keys = tuple(values)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(self._statement, self._dialect, keys)
        return conn.exec_driver_sql(compiled.sql, compiled.parameters(values))


class _Compiled:
    def __init__(self, statement: ClauseElement, dialect: Dialect,
                 keys: tuple[str, ...]) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys)))
        self.sql = compiled.string
        self.positional = compiled.positional
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        self.plan: list[tuple[str, bool, Any, Callable[[Any], Any] | None]] = []
        for name in names or ():
            bind = compiled.binds[name]
            given = name in keys
            self.plan.append((name, given, None if given else bind.effective_value,
                              bind.type.dialect_impl(dialect).bind_processor(dialect)))

    def parameters(self, values: dict[str, Any]) -> Any:
        converted = []
        for name, given, literal, process in self.plan:
            value = values[name] if given else literal
            converted.append(value if process is None or value is None else process(value))
        if self.positional:
            return tuple(converted)
        return {name: value for (name, *_), value in zip(self.plan, converted, strict=True)}


def _statements(engine: Engine) -> tuple[Executable, Executable, Executable]:
    """The three statements of an instance, built once (SQLite and PostgreSQL both have
    INSERT ... ON CONFLICT): the instance row unless its SOP Instance UID is indexed; the study
    row, or on a known study its last arrival and state; the series row, or on a known series
    its counts, completion timer and state (a late instance when it had been complete)."""
    dialect = engine.dialect.name
    make: Callable[[Table], Any]
    if dialect == "sqlite":
        make = sqlite_insert
    elif dialect == "postgresql":
        make = pg_insert
    else:
        raise ValueError(f"the index needs SQLite or PostgreSQL, not {dialect}")
    # rowcount of an INSERT is kept only when asked for (preserve_rowcount): it says whether the
    # instance row was added.
    add_instance = make(instances).on_conflict_do_nothing(
        index_elements=[instances.c.sop_instance_uid]).execution_options(preserve_rowcount=True)
    study = make(studies)
    upsert_study = study.on_conflict_do_update(
        index_elements=[studies.c.study_instance_uid],
        set_={"last_received_at": study.excluded.last_received_at, "state": "receiving"},
    )
    row = make(series)
    upsert_series = row.on_conflict_do_update(
        index_elements=[series.c.series_instance_uid],
        set_={
            "instance_count": series.c.instance_count + 1,
            "bytes_received": series.c.bytes_received + row.excluded.bytes_received,
            "last_received_at": row.excluded.last_received_at,
            "complete_after": row.excluded.complete_after,
            "state": "receiving",
            # SET expressions see the row as it was: complete before this instance = late.
            "late_instances": series.c.late_instances
            + case((series.c.state == "complete", 1), else_=0),
        },
    )
    return add_instance, upsert_study, upsert_series


def differences(header: InstanceHeader, stored: StoredInstance, raw: Received, *,
                read_stored: Callable[[str], bytes] = lambda path: Path(path).read_bytes(),
                ) -> tuple[str, ...]:
    """What distinguishes a repeated instance (`header`, read from `raw`) from the indexed one
    under its SOP Instance UID: names only (patient_id, study, series, content), never values.

    Pixel content is compared by hash (`parse.content_sha256`) only when both arrived in the
    same transfer syntax: the same pixels compressed differently cannot be compared without
    decoding, which ingest avoids. No hash is computed on receipt; both are computed here, the
    indexed one from its spool file (`read_stored` of its path) unless its row holds one (rows
    written before hashing became lazy). An indexed file that cannot be read or parsed leaves the
    content uncompared, as a row without a hash did.
    """
    patient = fit(studies, {"patient_id": header.patient_id})["patient_id"]
    checks = (
        ("patient_id", patient == stored.patient_id),
        ("study", header.study_instance_uid == stored.study_instance_uid),
        ("series", header.series_instance_uid == stored.series_instance_uid),
        ("content", header.transfer_syntax_uid != stored.transfer_syntax_uid
         or _same_content(header, raw, stored, read_stored)),
    )
    return tuple(name for name, same in checks if not same)


_UNREADABLE: tuple[type[Exception], ...] = (OSError, CannotUnderstand, *PARSE_ERRORS)


def _same_content(header: InstanceHeader, raw: Received, stored: StoredInstance,
                  read_stored: Callable[[str], bytes]) -> bool:
    indexed = stored.content_sha256
    if indexed is None:
        try:
            indexed = content_sha256(read_stored(stored.path), stored.transfer_syntax_uid)
        except _UNREADABLE as exc:
            log.warning("indexed instance unreadable, content not compared sop=%s cause=%s",
                        header.sop_instance_uid, type(exc).__name__)
            return True
    return content_sha256(raw, header.transfer_syntax_uid) == indexed
