"""A repeated SOP Instance UID whose comparison meets a database error, through the real SCP
(DCMTK storescu as sender). Once the index has counted the repeat, the UID is indexed: a failed
look-up, duplicate count or conflict record must not turn that into a refusal. The received copy
is kept aside (nothing received is lost) and the sender is answered as for any repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from sqlalchemy.exc import OperationalError

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.integration.dicom_node.scp.test_duplicates import DCMTK_STATUS, send
from tests.support.peers.dcmtk import dataset_bytes, storescu


def _db_error(*_args: object, **_kwargs: object) -> None:
    raise OperationalError("SELECT ...", {}, Exception("server closed the connection"))


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    path.write_bytes(part10(ds))
    return path


def _indexed_rows(node) -> list[tuple[str, int]]:
    with node.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT path, duplicates FROM instances").all()]


def test_a_counted_repeat_whose_look_up_fails_is_kept_aside_and_answered_success(
        node_factory, tmp_path, monkeypatch):
    """The copy names another series, so it is written at a new path and the index counts it as
    a repeat; then the look-up of the indexed row fails."""
    node = node_factory()
    first = _write(ct_dataset(), tmp_path / "first.dcm")
    assert send(node, first) == Status.SUCCESS
    copy = pydicom.dcmread(first)
    copy.SeriesInstanceUID = pydicom.uid.generate_uid()
    second = _write(copy, tmp_path / "second.dcm")

    monkeypatch.setattr(node.index, "stored_instance", _db_error)
    assert send(node, second) == Status.SUCCESS

    [(path, duplicates)] = _indexed_rows(node)
    assert dataset_bytes(Path(path)) == dataset_bytes(first)  # the indexed one is untouched
    assert duplicates == 1
    conflicts = Path(node.settings.dicom.spool_dir) / ".rejected" / "conflicts"
    [kept] = conflicts.glob("*.dcm")
    assert dataset_bytes(kept) == dataset_bytes(second)
    record = json.loads(kept.with_suffix(".json").read_text())
    assert record["reason_code"] == "duplicate_not_compared"
    assert record["sop_instance_uid"] == copy.SOPInstanceUID
    assert node.index.failures() == []


@pytest.mark.parametrize("failing", ["count_duplicate", "record_conflict"])
def test_a_repeat_is_answered_as_a_repeat_when_its_count_or_record_fails(
        node_factory, tmp_path, monkeypatch, failing):
    node = node_factory()
    original = ct_dataset()
    first = _write(original, tmp_path / "first.dcm")
    assert send(node, first) == Status.SUCCESS
    conflicting = pydicom.dcmread(first)
    conflicting.PatientID = "OTHER-PATIENT"
    second = _write(conflicting, tmp_path / "second.dcm")

    monkeypatch.setattr(node.index, failing, _db_error)
    assert send(node, first) == Status.SUCCESS
    assert send(node, second) == Status.WARNING_ELEMENTS_DISCARDED

    [(path, duplicates)] = _indexed_rows(node)
    assert dataset_bytes(Path(path)) == dataset_bytes(first)
    assert duplicates == (0 if failing == "count_duplicate" else 2)
    conflicts = Path(node.settings.dicom.spool_dir) / ".rejected" / "conflicts"
    [kept] = conflicts.glob("*.dcm")
    assert dataset_bytes(kept) == dataset_bytes(second)
    record = json.loads(kept.with_suffix(".json").read_text())
    assert record["differences"] == "patient_id"
    if failing == "record_conflict":
        assert node.index.conflicts() == []  # the sidecar is the only record
    assert node.index.failures() == []


@pytest.mark.parametrize("failing", ["stored_instance", "record_conflict"])
def test_a_repeat_neither_compared_nor_kept_is_refused_so_that_it_is_sent_again(
        node_factory, tmp_path, monkeypatch, failing):
    """Where the copy cannot be kept aside either (the spool below its watermark), a Success or
    a warning would leave the received copy nowhere: it is refused (0x0110) instead."""
    node = node_factory()
    first = _write(ct_dataset(), tmp_path / "first.dcm")
    assert send(node, first) == Status.SUCCESS
    copy = pydicom.dcmread(first)
    if failing == "stored_instance":
        copy.SeriesInstanceUID = pydicom.uid.generate_uid()  # a new path: counted, looked up
    else:
        copy.PatientID = "OTHER-PATIENT"  # a conflict to record
    second = _write(copy, tmp_path / "second.dcm")

    monkeypatch.setattr(node.index, failing, _db_error)
    monkeypatch.setattr(node.spool, "keep_rejected", lambda *_args, **_kwargs: None)
    result = storescu(node.server.port, [second], extra=["-d"])
    assert int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16) == (
        Status.PROCESSING_FAILURE)

    [(path, _)] = _indexed_rows(node)
    assert dataset_bytes(Path(path)) == dataset_bytes(first)
    [listed] = node.index.failures()
    assert listed.record.reason_code == "index_write_failed"
