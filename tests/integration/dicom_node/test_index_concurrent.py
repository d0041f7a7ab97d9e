"""The index under concurrent writers (as with several associations), on SQLite and PostgreSQL:
every instance indexed once, each repeat counted as a duplicate, the study and series rows
created once and their counts exact, a late instance reopening a complete series."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore, Receipt
from dicom_node.index.tables import instances, series, studies
from infernode.db import create_engine, migrate

STUDY, SERIES = "1.2.826.0.1.3680043.10.1563.7.1", "1.2.826.0.1.3680043.10.1563.7.1.2"


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'index.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    yield IndexStore(engine)
    engine.dispose()


def _header(k: int) -> InstanceHeader:
    return InstanceHeader(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"{SERIES}.{k}",
        study_instance_uid=STUDY, series_instance_uid=SERIES,
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", body_part_examined="HEAD",
        series_description=None, protocol_name=None, image_type=("ORIGINAL", "PRIMARY"),
        series_number=1, instance_number=k, slice_thickness=1.0, images_in_acquisition=None,
        patient_id="PID", accession_number=None, study_date="20261204",
    )


def _record(index: IndexStore, k: int) -> bool:
    return index.record_instance(
        _header(k), path=f"/spool/{k}.dcm", size_bytes=100 + k,
        receipt=Receipt("SCU", "INFERNODE", datetime.now(UTC)), quiet_period_s=5.0)


def test_concurrent_writers_index_each_instance_once(index):
    threads, per_thread = 8, 15
    results: dict[int, list[bool]] = {}
    start = threading.Barrier(threads)

    def sender(j: int) -> None:
        start.wait()
        # Every thread sends its own instances, then the first five again (repeats).
        mine = [j * 1000 + k for k in range(per_thread)]
        results[j] = [_record(index, k) for k in mine + mine[:5]]

    workers = [threading.Thread(target=sender, args=(j,)) for j in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert all(r == [True] * per_thread + [False] * 5 for r in results.values()), results
    fresh = [j * 1000 + k for j in range(threads) for k in range(per_thread)]
    with index.engine.connect() as conn:
        assert conn.scalar(select(series.c.instance_count)) == len(fresh)
        assert conn.scalar(select(series.c.bytes_received)) == sum(100 + k for k in fresh)
        assert conn.scalar(select(series.c.late_instances)) == 0
        assert conn.execute(select(studies.c.study_instance_uid)).all() == [(STUDY,)]
        dups = dict(conn.execute(select(instances.c.instance_number, instances.c.duplicates)).all())
    assert len(dups) == len(fresh)
    assert sum(dups.values()) == threads * 5
    assert index.counts()["series"] == 1


def test_an_instance_for_a_complete_series_reopens_it_as_late(index):
    assert _record(index, 1)
    with index.engine.begin() as conn:
        conn.execute(update(series).values(state="complete"))
        conn.execute(update(studies).values(state="emitted"))
    assert _record(index, 2)
    assert not _record(index, 2)
    with index.engine.connect() as conn:
        row = conn.execute(select(series.c.state, series.c.late_instances,
                                  series.c.instance_count)).one()
        assert tuple(row) == ("receiving", 1, 2)
        assert conn.scalar(select(studies.c.state)) == "receiving"
