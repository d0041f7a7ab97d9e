"""Retention with a clock the test moves, against the real index on SQLite and PostgreSQL:
studies whose jobs and deliveries ended go after N days (spool files, index rows behind a
tombstone, output files), dead letters keep theirs, a late instance revives a tombstoned study
as a new amendment, orphans are swept, and the spool gauges are exported."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from dicom_node.assembly import StudyAssembler
from dicom_node.events import StudyReady
from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore, Receipt
from dicom_node.index.tables import instances, series, studies
from dicom_node.retention import SpoolWatch, is_tombstoned
from dicom_node.spool import Spool
from infernode.audit import AuditLog
from infernode.cli_retention import Retention, RetentionMetrics
from infernode.db import create_engine, migrate
from workers.config import RetentionConfig, WorkersConfig
from workers.jobs import claim, complete, fail
from workers.messages import OutputRef, PipelineResult
from workers.outbox.claims import Failure, claim_due, mark_delivered, mark_failed
from workers.outbox.config import DeliveryConfig
from workers.outbox.tables import outputs
from workers.submit import on_study_ready

T0 = datetime.now(UTC).replace(microsecond=0)
CT = "1.2.840.10008.5.1.4.1.1.2"
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _header(study: str, sop: str) -> InstanceHeader:
    return InstanceHeader(
        sop_class_uid=CT, sop_instance_uid=sop, study_instance_uid=study,
        series_instance_uid=f"{study}.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="CT", body_part_examined="HEAD", series_description="CT Head",
        protocol_name=None, image_type=("ORIGINAL", "PRIMARY", "AXIAL"), series_number=2,
        instance_number=int(sop.rsplit(".", 1)[1]), slice_thickness=5.0,
        images_in_acquisition=None, patient_id="RETENTION-P", accession_number="RET-A",
        study_date="20261201",
    )


class World:
    """A node's index, spool, outputs and job layer, driven by the test's clock."""

    def __init__(self, engine: sa.Engine, tmp: Path) -> None:
        self.engine, self.clock = engine, Clock()
        self.spool = Spool(tmp / "spool", 0)
        self.spool.prepare()
        self.outputs = tmp / "outputs"
        self.index = IndexStore(engine)
        self.ready: list[StudyReady] = []
        self.assembler = StudyAssembler(engine, self.ready.append, clock=self.clock)
        self.cfg = WorkersConfig(
            max_attempts=1,
            delivery=DeliveryConfig(destinations=[
                {"type": "dicom", "name": "pacs", "host": "127.0.0.1", "port": 104,
                 "called_ae": "PACS"}]))

    def receive(self, study: str, count: int = 10) -> list[Path]:
        paths = []
        for n in range(1, count + 1):
            header = _header(study, f"{study}.1.{n}")
            path = self.spool.path_for(study, header.series_instance_uid,
                                       header.sop_instance_uid)
            self.spool.write(b"DICM" * 64, path)
            self.index.record_instance(header, path=str(path), size_bytes=256,
                                       receipt=Receipt("CT1", "INFERNODE", self.clock()),
                                       quiet_period_s=10.0)
            paths.append(path)
        return paths

    def complete_study(self) -> StudyReady:
        self.clock.now += timedelta(seconds=30)
        self.assembler.tick()
        return self.ready[-1]

    def run_job(self, event: StudyReady, *, outcome: str) -> Path:
        """Routes the study to `ich`, runs the job to `outcome` (succeeded or
        dead_lettered), and for a success records a SEG file under the outputs folder."""
        (job,) = on_study_ready(self.engine, self.cfg, event, clock=self.clock)
        started = claim(self.engine, self.cfg, job.id, "w", "cpu", self.clock())
        assert started.context is not None, started.reason
        path = self.outputs / event.study_instance_uid / "ich" / "seg.dcm"
        if outcome == "dead_lettered":
            assert fail(self.engine, self.cfg, job.id, started.context.attempt,
                        permanent=False, reason="transient", error="peer down",
                        now=self.clock()) is not None
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"SEG" * 100)
        uid = f"{event.study_instance_uid}.9.{event.amendment}"
        result = PipelineResult(outputs=(OutputRef(kind="dicom", uid=uid, path=str(path)),))
        assert complete(self.engine, job.id, started.context.attempt, result, self.clock(),
                        self.clock, delivery=self.cfg.delivery)
        return path

    def deliver(self, *, dead: bool = False) -> None:
        due = claim_due(self.engine, ["pacs"], self.clock(), 60, 100)
        assert due is not None
        for item in due.items:
            if dead:
                mark_failed(self.engine, due.token, item,
                            Failure(permanent=True, reason="permanent", error="refused"),
                            self.clock(), 0.1, self.cfg.delivery.backoff, random.Random(1))
            else:
                assert mark_delivered(self.engine, due.token, item.id, self.clock(), 0.1)

    def retention(self, policy: RetentionConfig, registry: CollectorRegistry | None = None,
                  warning: int = 0) -> Retention:
        registry = registry or CollectorRegistry()
        return Retention(self.engine, self.spool, policy, self.outputs,
                         metrics=RetentionMetrics(registry),
                         watch=SpoolWatch(self.spool, warning, registry))


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = create_engine(url)
    migrate(engine)
    yield World(engine, tmp_path)
    engine.dispose()


def _count(engine: sa.Engine, table: sa.Table, study: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(table).where(
            table.c.study_instance_uid == study)) or 0


def test_studies_go_n_days_after_their_work_ended_dead_letters_stay(world):
    done, dead_job, dead_delivery = "1.2.826.0.1.77.1", "1.2.826.0.1.77.2", "1.2.826.0.1.77.3"
    files: dict[str, list[Path]] = {}
    for study in (done, dead_job, dead_delivery):
        files[study] = world.receive(study)
    world.complete_study()
    events = {e.study_instance_uid: e for e in world.ready}
    assert set(events) == {done, dead_job, dead_delivery}
    seg_done = world.run_job(events[done], outcome="succeeded")
    world.run_job(events[dead_job], outcome="dead_lettered")
    seg_dead = world.run_job(events[dead_delivery], outcome="succeeded")
    world.clock.now += timedelta(hours=1)
    # the delivery of `done` succeeds; the other study's delivery is refused for good
    due = claim_due(world.engine, ["pacs"], world.clock(), 60, 100)
    assert due is not None and len(due.items) == 2
    for item in due.items:
        if item.output.study_instance_uid == done:
            assert mark_delivered(world.engine, due.token, item.id, world.clock(), 0.1)
        else:
            mark_failed(world.engine, due.token, item,
                        Failure(permanent=True, reason="permanent", error="refused"),
                        world.clock(), 0.1, world.cfg.delivery.backoff, random.Random(1))
    ended = world.clock()

    policy = RetentionConfig(days=7)
    retention = world.retention(policy)
    world.clock.now = ended + 7 * DAY - timedelta(minutes=1)
    report = retention.run(world.clock())
    assert report.due == [] and report.kept == {"within retention period": 1,
                                                "dead-lettered job": 1, "dead delivery": 1}

    world.clock.now = ended + 7 * DAY + timedelta(minutes=1)
    dry = retention.run(world.clock(), dry_run=True)
    assert dry.due == [done] and all(p.exists() for p in files[done]) and seg_done.exists()

    report = retention.run(world.clock())
    assert report.due == [done] and report.studies_deleted == 1
    assert report.spool_files == 10 and report.output_files == 1
    assert not any(p.exists() for p in files[done]) and not seg_done.exists()
    assert not (world.spool.root / done).exists()
    assert _count(world.engine, instances, done) == 0 == _count(world.engine, series, done)
    assert _count(world.engine, studies, done) == 1 and is_tombstoned(world.engine, done)
    assert _count(world.engine, outputs, done) == 1  # the UIDs stay: re-runs stay idempotent
    (audited,) = AuditLog(world.engine).query(actor="retention")
    assert (audited.action, audited.subject) == ("deleted_by_retention", done)
    assert audited.detail == {"spool_files": 10, "output_files": 1, "bytes": report.bytes,
                              "tombstoned": True}
    # the dead letters keep their images and outputs, however long an operator takes
    world.clock.now += 365 * DAY
    report = retention.run(world.clock())
    assert report.due == [] and report.kept == {"dead-lettered job": 1, "dead delivery": 1}
    assert all(p.exists() for s in (dead_job, dead_delivery) for p in files[s])
    assert seg_dead.exists()


def test_per_pipeline_override_and_a_late_instance_revives_a_tombstone(world):
    study = "1.2.826.0.1.78.1"
    world.receive(study)
    world.run_job(world.complete_study(), outcome="succeeded")
    world.deliver()
    world.clock.now += 3 * DAY
    kept = world.retention(RetentionConfig(days=1, pipelines={"ich": None}))
    assert kept.run(world.clock()).kept == {"retention off": 1}
    longer = world.retention(RetentionConfig(days=1, pipelines={"ich": 5}))
    assert longer.run(world.clock()).kept == {"within retention period": 1}
    shorter = world.retention(RetentionConfig(days=30, pipelines={"ich": 2}))
    assert shorter.run(world.clock()).due == [study]
    assert is_tombstoned(world.engine, study)

    # the same study sent again: stored, indexed and routed as a new amendment
    world.clock.now += DAY
    again = world.receive(study, count=12)
    assert all(p.exists() for p in again) and not is_tombstoned(world.engine, study)
    event = world.complete_study()
    assert event.study_instance_uid == study and event.amendment == 1
    assert [s.instance_count for s in event.series] == [12]
    seg = world.run_job(event, outcome="succeeded")
    assert seg.exists()
    world.clock.now += 3 * DAY
    report = shorter.run(world.clock())  # clears the old tombstone; the new work is pending
    assert report.due == [] and report.kept == {"pending delivery": 1}
    with world.engine.connect() as conn:
        assert conn.scalar(sa.select(studies.c.deleted_at).where(
            studies.c.study_instance_uid == study)) is None


def test_orphans_swept_and_spool_gauges_exported(world):
    tmp_dir = world.spool.root / ".tmp"
    old_part, new_part = tmp_dir / "old.part", tmp_dir / "new.part"
    old_part.write_bytes(b"x")
    new_part.write_bytes(b"x")
    world.receive("1.2.826.0.1.79.1")
    seg = world.run_job(world.complete_study(), outcome="succeeded")
    stray = world.outputs / "1.2.826.0.1.79.2" / "ich" / "sr.dcm"
    fresh_stray = world.outputs / "1.2.826.0.1.79.3" / "sr.dcm"
    for path in (stray, fresh_stray):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    rejected = world.spool.keep_rejected(b"refused", {"reason": "test"})
    assert rejected is not None
    two_hours_ago = (world.clock() - timedelta(hours=2)).timestamp()
    for path in (old_part, stray, stray.parent, stray.parent.parent, seg):
        os.utime(path, (two_hours_ago, two_hours_ago))
    registry = CollectorRegistry()
    report = world.retention(RetentionConfig(), registry, warning=2**62).run(world.clock())
    assert report.orphans == {"tmp": 1, "outputs": 1, "rejected": 0}
    assert not old_part.exists() and new_part.exists()
    assert not stray.exists() and not stray.parent.parent.exists()
    assert fresh_stray.exists() and seg.exists()  # recorded output, and one still being made
    assert rejected.exists()  # retention off: refused instances stay

    report = world.retention(RetentionConfig(days=30, rejected_days=10)).run(world.clock())
    assert report.orphans["rejected"] == 0  # by file age: the kept file is new
    old = (world.clock() - 11 * DAY).timestamp()
    os.utime(rejected, (old, old))
    os.utime(rejected.with_suffix(".json"), (old, old))
    report = world.retention(RetentionConfig(days=30, rejected_days=10)).run(world.clock())
    assert report.orphans["rejected"] == 2 and not rejected.exists()

    free = registry.get_sample_value("infernode_spool_free_bytes")
    assert free is not None and free > 0
    assert registry.get_sample_value("infernode_spool_warning_free_bytes") == 2**62
    assert registry.get_sample_value("infernode_spool_min_free_bytes") == 0
    assert registry.get_sample_value("infernode_orphan_files_removed_total",
                                     {"kind": "tmp"}) == 1


def test_cli_dry_run_lists_and_deletes_nothing(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from infernode.cli import app

    db = tmp_path / "node.db"
    engine = create_engine(f"sqlite:///{db}")
    migrate(engine)
    world = World(engine, tmp_path)
    world.clock.now = datetime.now(UTC) - 3 * DAY  # the command reads the real clock
    study = "1.2.826.0.1.80.1"
    files = world.receive(study)
    world.run_job(world.complete_study(), outcome="succeeded")
    world.deliver()
    engine.dispose()
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "database": {"url": f"sqlite:///{db}"},
        "dicom": {"spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0},
        "workers": {"retention": {"days": 1}}}))
    result = CliRunner().invoke(app, ["retention", "run", "-c", str(config), "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] is True and report["due"] == [study]
    assert all(p.exists() for p in files)
    result = CliRunner().invoke(app, ["retention", "run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in files)


def test_the_loop_runs_passes_on_its_interval_until_stopped(tmp_path):
    import threading

    from tests.support.waiting import wait_until

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    world = World(engine, tmp_path)
    orphan = world.spool.root / ".tmp" / "left.part"
    orphan.write_bytes(b"x")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(orphan, (old, old))
    registry = CollectorRegistry()
    retention = world.retention(RetentionConfig(interval_s=0.2, orphan_grace_s=3600), registry)
    stop = threading.Event()
    thread = threading.Thread(target=retention.loop, args=(stop, lambda: datetime.now(UTC)))
    thread.start()
    try:
        wait_until(lambda: not orphan.exists(), 30, "a pass of the loop to sweep the orphan")
        wait_until(lambda: registry.get_sample_value(
            "infernode_retention_last_run_timestamp_seconds"), 30, "the pass to be recorded")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    engine.dispose()
