"""A copy of an instance that arrives while retention deletes its study, through the real SCP
(DCMTK storescu as sender) on both upper layers. Retention unlinks a study's files, then deletes
its rows; a copy placed between the two steps is first counted as already indexed, then finds no
row. It must be stored and indexed like any instance arriving after the deletion (the study
comes back to life), never acknowledged and then missing."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import delete, select, update

from dicom_node.assembly import utc_now
from dicom_node.errors import DeletedWhileStored, OutOfResources
from dicom_node.index.tables import instances, series, studies
from dicom_node.retention import Candidate, delete_study, is_tombstoned
from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.integration.dicom_node.scp.test_duplicates import DCMTK_STATUS, send
from tests.support.peers.dcmtk import dataset_bytes, storescu


def _rows_only(node, study: str) -> None:
    """Retention's second step alone: the rows go and the study is tombstoned."""
    with node.engine.begin() as conn:
        conn.execute(delete(instances).where(instances.c.study_instance_uid == study))
        conn.execute(delete(series).where(series.c.study_instance_uid == study))
        conn.execute(update(studies).where(studies.c.study_instance_uid == study)
                     .values(deleted_at=utc_now()))


def _whole_deletion(node, study: str) -> None:
    """A whole retention pass, which also unlinks the copy just placed at the same path."""
    with node.engine.connect() as conn:
        last = conn.scalar(select(studies.c.last_received_at)
                           .where(studies.c.study_instance_uid == study))
    last = last if last.tzinfo else last.replace(tzinfo=UTC)  # as `retention.candidates` reads it
    deleted = delete_study(node.engine, node.spool, Candidate(study, last), utc_now())
    assert deleted.tombstoned


@pytest.mark.parametrize("upper_layer", ["native", "pynetdicom"])
@pytest.mark.parametrize("retention", [_rows_only, _whole_deletion])
def test_a_copy_placed_while_retention_deletes_its_study_is_stored_and_indexed(
        node_factory, tmp_path, monkeypatch, upper_layer, retention):
    node = node_factory(upper_layer=upper_layer)
    ds = ct_dataset()
    sent = tmp_path / "instance.dcm"
    sent.write_bytes(part10(ds))
    assert send(node, sent) == Status.SUCCESS
    study = ds.StudyInstanceUID
    [(first_path,)] = _paths(node)
    Path(first_path).unlink()  # retention's first step: the study's files are unlinked

    counted: list[bool] = []
    record_instance = node.index.record_instance

    def racing(*args, **kwargs):
        fresh = record_instance(*args, **kwargs)
        counted.append(fresh)
        if not fresh and len(counted) == 1:  # the row was still there: retention goes on
            retention(node, study)
        return fresh

    monkeypatch.setattr(node.index, "record_instance", racing)
    assert send(node, sent) == Status.SUCCESS

    assert counted == [False, True]  # counted as indexed once, then indexed again
    [(path,)] = _paths(node)
    assert dataset_bytes(Path(path)) == dataset_bytes(sent)
    assert pydicom.dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
    assert not is_tombstoned(node.engine, study)  # a late instance revives the study
    spool = Path(node.settings.dicom.spool_dir)
    assert [p for p in (spool / ".slots").rglob("*") if p.is_file() and p.stat().st_size] == []
    assert not (spool / ".rejected").exists() or not any((spool / ".rejected").rglob("*.dcm"))
    assert node.index.failures() == []


def _paths(node) -> list[tuple[str]]:
    with node.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(instances.c.path)).all()]


@pytest.mark.parametrize("upper_layer", ["native", "pynetdicom"])
def test_a_copy_whose_study_keeps_being_deleted_is_refused_kept_aside_and_not_left_placed(
        node_factory, tmp_path, monkeypatch, upper_layer):
    """Bounded: a study deleted again at every attempt ends in a refusal (the sender resends),
    with the received copy kept aside and no file left in the spool proper."""
    node = node_factory(upper_layer=upper_layer)
    ds = ct_dataset()
    sent = tmp_path / "instance.dcm"
    sent.write_bytes(part10(ds))
    record_instance = node.index.record_instance
    attempts: list[bool] = []

    def always_deleted(*args, **kwargs):
        attempts.append(record_instance(*args, **kwargs))
        _rows_only(node, ds.StudyInstanceUID)
        return False  # counted as indexed, and gone again before the look-up

    monkeypatch.setattr(node.index, "record_instance", always_deleted)
    result = storescu(node.server.port, [sent], extra=["-d"])
    status = int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16)

    assert status == DeletedWhileStored.status
    assert len(attempts) == 3
    assert _paths(node) == []
    spool = Path(node.settings.dicom.spool_dir)
    assert list(spool.glob("1*/**/*.dcm")) == []
    [kept] = (spool / ".rejected").glob("*.dcm")
    assert dataset_bytes(kept) == dataset_bytes(sent)
    [failure] = node.index.failures()
    assert failure.record.reason_code == "deleted_while_stored"


@pytest.mark.parametrize("failing", ["stage", "place"])
def test_a_second_attempt_that_cannot_be_written_leaves_nothing_placed(
        node_factory, tmp_path, monkeypatch, failing):
    """The copy cannot be staged again (the spool at its free-space mark), or is staged but
    cannot be placed (the disk fails): refused, and the file the first attempt placed goes
    aside too, instead of staying unindexed for start-up recovery to index."""
    node = node_factory()
    ds = ct_dataset()
    sent = tmp_path / "instance.dcm"
    sent.write_bytes(part10(ds))
    assert send(node, sent) == Status.SUCCESS
    Path(_paths(node)[0][0]).unlink()  # retention's first step
    record_instance = node.index.record_instance

    def deleted_after_counting(*args, **kwargs):
        fresh = record_instance(*args, **kwargs)
        _rows_only(node, ds.StudyInstanceUID)
        monkeypatch.setattr(node.spool, failing, _out_of_space)
        return fresh

    monkeypatch.setattr(node.index, "record_instance", deleted_after_counting)
    result = storescu(node.server.port, [sent], extra=["-d"])
    status = int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16)

    assert status == OutOfResources.status
    assert _paths(node) == []
    spool = Path(node.settings.dicom.spool_dir)
    assert list(spool.glob("1*/**/*.dcm")) == []  # nothing placed stays for recovery
    [kept] = (spool / ".rejected").glob("*.dcm")
    assert dataset_bytes(kept) == dataset_bytes(sent)


def _out_of_space(*_args, **_kwargs):
    raise OutOfResources("spool below its free-space mark")
