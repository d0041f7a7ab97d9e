"""Study assembly with an injected clock: quiet period, expected counts, late instances, restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dicom_node.assembly import StudyAssembler
from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore, Receipt
from infernode.db import create_engine, migrate

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def header(study="1.2.3", series="1.2.3.1", sop="1.2.3.1.1", expected=None) -> InstanceHeader:
    return InstanceHeader(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=sop,
        study_instance_uid=study, series_instance_uid=series,
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", body_part_examined="HEAD",
        series_description="Head", protocol_name=None, image_type=("ORIGINAL", "PRIMARY"),
        series_number=2, instance_number=1, slice_thickness=5.0,
        images_in_acquisition=expected, patient_id="P", accession_number="A", study_date=None,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def store(index: IndexStore, clock: Clock, h: InstanceHeader, quiet: float = 10.0) -> bool:
    return index.record_instance(
        h, path="/x", size_bytes=10,
        receipt=Receipt(calling_ae="SCU", called_ae="INFERNODE", at=clock()),
        quiet_period_s=quiet,
    )


def test_series_completes_after_its_quiet_period(engine):
    clock, seen = Clock(), []
    index = IndexStore(engine)
    assembler = StudyAssembler(engine, seen.append, clock=clock)
    store(index, clock, header(sop="1.1"))
    clock.now += timedelta(seconds=9)
    store(index, clock, header(sop="1.2"))  # resets the timer
    clock.now += timedelta(seconds=9)
    assert assembler.tick() == []
    clock.now += timedelta(seconds=1.5)
    [event] = assembler.tick()
    assert event.study_instance_uid == "1.2.3" and event.amendment == 0
    [summary] = event.series
    assert summary.instance_count == 2 and summary.modality == "CT"
    assert summary.sop_class_uids == ("1.2.840.10008.5.1.4.1.1.2",)
    assert assembler.tick() == []  # handed over once


def test_expected_count_completes_early(engine):
    clock, seen = Clock(), []
    index = IndexStore(engine)
    assembler = StudyAssembler(engine, seen.append, clock=clock)
    store(index, clock, header(sop="1.1", expected=2), quiet=600)
    assert assembler.tick() == []
    store(index, clock, header(sop="1.2", expected=2), quiet=600)
    assert len(assembler.tick()) == 1


def test_study_waits_for_all_its_series(engine):
    clock = Clock()
    index = IndexStore(engine)
    assembler = StudyAssembler(engine, lambda e: None, clock=clock)
    store(index, clock, header(series="1.2.3.1", sop="1.1"), quiet=5)
    store(index, clock, header(series="1.2.3.2", sop="2.1"), quiet=60)
    clock.now += timedelta(seconds=10)
    assert assembler.tick() == []
    clock.now += timedelta(seconds=60)
    [event] = assembler.tick()
    assert len(event.series) == 2


def test_late_instance_fires_an_amendment(engine):
    clock = Clock()
    index = IndexStore(engine)
    assembler = StudyAssembler(engine, lambda e: None, clock=clock)
    store(index, clock, header(sop="1.1"))
    clock.now += timedelta(seconds=11)
    assert assembler.tick()[0].amendment == 0
    store(index, clock, header(sop="1.2"))
    clock.now += timedelta(seconds=11)
    [event] = assembler.tick()
    assert event.amendment == 1
    assert event.series[0].instance_count == 2
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT late_instances FROM series").scalar_one() == 1


def test_timers_survive_a_restart_and_a_failed_consumer_is_retried(engine):
    clock = Clock()
    store(IndexStore(engine), clock, header(sop="1.1"))

    def failing(_event):
        raise RuntimeError("consumer down")

    clock.now += timedelta(seconds=11)
    assert StudyAssembler(engine, failing, clock=clock).tick() == []
    # A new assembler (a restarted node) hands the study over.
    seen = []
    assert len(StudyAssembler(engine, seen.append, clock=clock).tick()) == 1
    assert len(seen) == 1


def test_duplicate_is_not_indexed_twice(engine):
    clock = Clock()
    index = IndexStore(engine)
    assert store(index, clock, header(sop="1.1"))
    assert not store(index, clock, header(sop="1.1"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT duplicates FROM instances").scalar_one() == 1
        assert conn.exec_driver_sql("SELECT instance_count FROM series").scalar_one() == 1
