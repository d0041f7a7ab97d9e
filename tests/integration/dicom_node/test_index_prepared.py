"""The index statements of a received instance, compiled once and run with `exec_driver_sql`
(`store._Prepared`), write exactly the rows SQLAlchemy's own execution of the same statements
writes: a new study and series, a second instance (the ON CONFLICT updates), a late instance of a
complete series, a repeat; on SQLite and PostgreSQL, values of every column type compared."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update

from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore, Receipt, _rows, _statements
from dicom_node.index.tables import instances, series, studies
from infernode.db import create_engine, migrate

AT = datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'index.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _header(root: str, k: int) -> InstanceHeader:
    return InstanceHeader(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"{root}.3.{k}",
        study_instance_uid=f"{root}.1", series_instance_uid=f"{root}.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", body_part_examined="HEAD",
        series_description="Kopf nativ \u00e4", protocol_name=None,
        image_type=("ORIGINAL", "PRIMARY"), series_number=3, instance_number=k,
        slice_thickness=0.625, images_in_acquisition=120, patient_id="PID-1",
        accession_number="ACC\u00df", study_date="20261205")


def _plain(engine: Engine, header: InstanceHeader, at: datetime) -> bool:
    """SQLAlchemy's own execution of the same three statements (the reference)."""
    add, study, row = _statements(engine)
    values = _rows(header, f"/spool/{header.sop_instance_uid}.dcm", 1000,
                   Receipt("SCU", "INFERNODE", at), 30.0)
    with engine.begin() as conn:
        added = conn.execute(add, values.instance).rowcount == 1
        if added:
            conn.execute(study, values.study)
            conn.execute(row, values.series)
        else:
            conn.execute(update(instances)
                         .where(instances.c.sop_instance_uid == header.sop_instance_uid)
                         .values(duplicates=instances.c.duplicates + 1))
    return added


def _prepared(index: IndexStore, header: InstanceHeader, at: datetime) -> bool:
    return index.record_instance(header, path=f"/spool/{header.sop_instance_uid}.dcm",
                                 size_bytes=1000, receipt=Receipt("SCU", "INFERNODE", at),
                                 quiet_period_s=30.0)


def _scenario(engine: Engine, root: str, write) -> list[bool]:  # type: ignore[no-untyped-def]
    outcomes = [write(_header(root, 1), AT), write(_header(root, 2), AT + timedelta(seconds=1))]
    with engine.begin() as conn:
        conn.execute(update(series).where(series.c.series_instance_uid == f"{root}.2")
                     .values(state="complete"))
    outcomes.append(write(_header(root, 3), AT + timedelta(seconds=2)))  # late
    outcomes.append(write(replace(_header(root, 1)), AT + timedelta(seconds=3)))  # repeat
    return outcomes


def _rows_of(engine: Engine, root: str) -> dict[str, list[dict[str, object]]]:
    def clean(row: dict[str, object]) -> dict[str, object]:
        return {k: (v.replace(root, "ROOT") if isinstance(v, str) else v)
                for k, v in row.items() if k != "id"}

    with engine.connect() as conn:
        return {
            "studies": [clean(dict(r._mapping)) for r in conn.execute(
                select(studies).where(studies.c.study_instance_uid == f"{root}.1"))],
            "series": [clean(dict(r._mapping)) for r in conn.execute(
                select(series).where(series.c.series_instance_uid == f"{root}.2"))],
            "instances": [clean(dict(r._mapping)) for r in conn.execute(
                select(instances).where(instances.c.series_instance_uid == f"{root}.2")
                .order_by(instances.c.instance_number))],
        }


def test_prepared_statements_write_what_sqlalchemy_writes(engine):
    index = IndexStore(engine)
    ours = _scenario(engine, "1.2.826.0.1.3680043.10.1563.8", lambda h, at: _prepared(index, h, at))
    reference = _scenario(engine, "1.2.826.0.1.3680043.10.1563.9",
                          lambda h, at: _plain(engine, h, at))
    assert ours == reference == [True, True, True, False]
    written = _rows_of(engine, "1.2.826.0.1.3680043.10.1563.8")
    expected = _rows_of(engine, "1.2.826.0.1.3680043.10.1563.9")
    assert written == expected
    [row] = written["series"]
    assert (row["instance_count"], row["late_instances"], row["state"]) == (3, 1, "receiving")
    assert [r["duplicates"] for r in written["instances"]] == [1, 0, 0]
