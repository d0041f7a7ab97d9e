"""The pixel hash is not computed on receipt (the index row holds none); a repeat is compared with
the indexed instance's spool file when it arrives, and so is an abandoned slot found by start-up
recovery for an indexed SOP Instance UID. SQLite and PostgreSQL; DCMTK storescu sends."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_node.recovery import recover_unindexed
from dicom_node.spool import Spool
from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.support.peers.dcmtk import storescu

DCMTK_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request):
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return request.getfixturevalue("node_factory")(url)


def _send(node, ds: Dataset, tmp_path, name: str) -> int:
    path = tmp_path / name
    path.write_bytes(part10(ds))
    result = storescu(node.server.port, [path], extra=["-d"])
    assert result.returncode == 0, result.stderr[-2000:]
    return int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16)


def _other_pixels(ds: Dataset) -> None:
    pixels = ds.pixel_array.copy()
    pixels[5, 5] += 1
    ds.PixelData = pixels.astype(np.int16).tobytes()


def test_no_hash_on_receipt_and_a_repeat_is_compared_with_the_stored_file(node, tmp_path):
    ds = ct_dataset(seed=11)
    assert _send(node, ds, tmp_path, "first.dcm") == Status.SUCCESS
    with node.engine.connect() as conn:
        [(digest, duplicates)] = conn.exec_driver_sql(
            "SELECT content_sha256, duplicates FROM instances").all()
    assert (digest, duplicates) == (None, 0)

    ds.SeriesDescription = "same pixels, header edited"
    assert _send(node, ds, tmp_path, "edited.dcm") == Status.SUCCESS
    _other_pixels(ds)
    assert _send(node, ds, tmp_path, "other.dcm") == Status.WARNING_ELEMENTS_DISCARDED

    [listed] = node.index.conflicts()
    assert listed.record.differences == "content"
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT duplicates FROM instances").scalar_one() == 2


def test_recovery_compares_an_abandoned_slot_with_the_indexed_file(node, tmp_path):
    ds = ct_dataset(seed=12)
    assert _send(node, ds, tmp_path, "first.dcm") == Status.SUCCESS
    stored = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    same = Spool(node.spool.root, 0).stage(stored.read_bytes())  # a repeat's slot, not removed
    assert same.written.result() is True
    _other_pixels(ds)
    other = Spool(node.spool.root, 0).stage(part10(ds))  # a conflicting repeat, likewise
    assert other.written.result() is True

    report = recover_unindexed(node.ingestor)

    assert (report.slots_dropped, report.slots_quarantined, report.slots_placed) == (1, 1, 0)
    assert not same.slot.exists() and not other.slot.exists()
    [record] = node.spool.kept_records()
    assert record["reason_code"] == "conflicting_slot"
    assert record["reason"] == "spool slot differs from the indexed instance"  # by content
    assert record["sop_instance_uid"] == ds.SOPInstanceUID
