"""Refusals: each failure answers a specific status, leaves a record, and stores nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from dicom_node.status import Status
from tests.support.peers.dcmtk import ct_series


def _associate(node):
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    assert assoc.is_established
    return assoc


def _failures(node):
    with node.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT status, reason_code, reason, sop_instance_uid, kept_path FROM ingest_failures"
        ).all()


def _instance_count(node) -> int:
    with node.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one()


def test_missing_study_uid_is_cannot_understand_and_recorded(node_factory, tmp_path):
    node = node_factory()
    ds = pydicom.dcmread(ct_series(tmp_path, slices=1)[0])
    del ds.StudyInstanceUID
    assoc = _associate(node)
    try:
        status = assoc.send_c_store(ds)
        assert status.Status == Status.CANNOT_UNDERSTAND
        # The association survives a refused instance.
        assert assoc.send_c_echo().Status == Status.SUCCESS
    finally:
        assoc.release()
    [(code, reason_code, reason, sop, kept)] = _failures(node)
    assert (code, reason_code, sop) == (Status.CANNOT_UNDERSTAND, "invalid_uid", ds.SOPInstanceUID)
    assert "StudyInstanceUID is missing" in reason
    assert kept and Path(kept).exists()
    assert _instance_count(node) == 0


def test_traversal_in_a_uid_never_becomes_a_path(node_factory, tmp_path):
    node = node_factory()
    ds = pydicom.dcmread(ct_series(tmp_path, slices=1)[0])
    ds.SeriesInstanceUID = "../../../../tmp/evil"
    assoc = _associate(node)
    try:
        assert assoc.send_c_store(ds).Status == Status.CANNOT_UNDERSTAND
    finally:
        assoc.release()
    spool = node.settings.dicom.spool_dir
    stored = [p for p in spool.rglob("*.dcm") if ".rejected" not in p.parts]
    assert stored == []
    assert not Path("/tmp/evil").exists()
    [(_, reason_code, reason, _, _)] = _failures(node)
    assert reason_code == "invalid_uid" and "not a valid UID" in reason
    assert "evil" not in reason


def test_duplicate_instance_is_stored_once_and_counted(node_factory, tmp_path):
    node = node_factory()
    [path] = ct_series(tmp_path, slices=1)
    assoc = _associate(node)
    try:
        assert assoc.send_c_store(path).Status == Status.SUCCESS
        assert assoc.send_c_store(path).Status == Status.SUCCESS
    finally:
        assoc.release()
    with node.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT duplicates FROM instances").all()
        (count,) = conn.exec_driver_sql("SELECT instance_count FROM series").one()
    assert rows == [(1,)]
    assert count == 1
    assert node.registry.get_sample_value(
        "infernode_instances_received_total", {"outcome": "duplicate"}
    ) == 1.0


def test_an_exception_in_the_handler_is_a_failure_status_not_a_dead_association(
    node_factory, tmp_path, monkeypatch
):
    node = node_factory()
    [path] = ct_series(tmp_path, slices=1)

    def broken(*_a, **_k):
        raise RuntimeError("index unavailable")

    monkeypatch.setattr(node.index, "record_instance", broken)
    assoc = _associate(node)
    try:
        assert assoc.send_c_store(path).Status == Status.PROCESSING_FAILURE
        assert assoc.send_c_echo().Status == Status.SUCCESS
    finally:
        assoc.release()
    [(code, reason_code, reason, _, _)] = _failures(node)
    assert code == Status.PROCESSING_FAILURE
    assert reason == "internal error: RuntimeError"


def test_below_the_watermark_every_store_is_out_of_resources(node_factory, tmp_path):
    node = node_factory(min_free_bytes=10**15)
    [path] = ct_series(tmp_path, slices=1)
    assoc = _associate(node)
    try:
        assert assoc.send_c_store(path).Status == Status.OUT_OF_RESOURCES
    finally:
        assoc.release()
    assert _instance_count(node) == 0
    [(code, reason_code, _, _, _)] = _failures(node)
    assert (code, reason_code) == (Status.OUT_OF_RESOURCES, "out_of_resources")


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_spool_refuses_and_recovers(node_factory, tmp_path, small_tmpfs):
    """A real filesystem fills up: 0xA700, nothing acknowledged that is not stored, then
    recovery once space is freed."""
    node = node_factory(spool_dir=str(small_tmpfs / "spool"), min_free_bytes=0)
    files = ct_series(tmp_path / "src", slices=12, size=64)  # about 8 kB each
    filler = small_tmpfs / "filler"
    # Leave room for only a few instances.
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    filler.write_bytes(b"\0" * max(free - 3 * 9000, 0))
    acknowledged, refused = [], []
    assoc = _associate(node)
    try:
        for f in files:
            status = assoc.send_c_store(f).Status
            (acknowledged if status == Status.SUCCESS else refused).append((f, status))
    finally:
        assoc.release()
    assert refused, "the spool never filled up"
    assert {s for _, s in refused} == {Status.OUT_OF_RESOURCES}
    with node.engine.connect() as conn:
        indexed = dict(conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all())
    acked_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                  for f, _ in acknowledged}
    assert set(indexed) == acked_uids
    for stored in indexed.values():
        pydicom.dcmread(stored)  # complete and parseable
    assert not list((small_tmpfs / "spool" / ".tmp").iterdir())
    filler.unlink()
    last, _ = refused[-1]
    assoc = _associate(node)
    try:
        assert assoc.send_c_store(last).Status == Status.SUCCESS
    finally:
        assoc.release()
