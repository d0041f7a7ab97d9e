"""The receive path without a duplicate look-up for new instances (docs/DICOM.md, Durability):
a file left at its final name without an index row (a crash between rename and commit) is
replaced and indexed when the sender sends again, and a repeat under another study leaves no
file behind at its own path. DCMTK storescu is the sender."""

from __future__ import annotations

from pathlib import Path

import pydicom

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.integration.dicom_node.scp.test_duplicates import send


def test_a_file_without_its_row_is_replaced_and_indexed(node_factory, tmp_path: Path):
    node = node_factory()
    ds = ct_dataset()
    source = tmp_path / "ct.dcm"
    source.write_bytes(part10(ds))
    final = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"a partial leftover of an unacknowledged store")
    assert send(node, source) == Status.SUCCESS
    with node.engine.connect() as conn:
        [(path, duplicates)] = conn.exec_driver_sql(
            "SELECT path, duplicates FROM instances").all()
    assert (Path(path), duplicates) == (final, 0)
    assert pydicom.dcmread(final).SOPInstanceUID == ds.SOPInstanceUID


def test_a_repeat_under_another_study_leaves_no_file_at_its_path(node_factory, tmp_path: Path):
    node = node_factory()
    ds = ct_dataset()
    first = tmp_path / "first.dcm"
    first.write_bytes(part10(ds))
    assert send(node, first) == Status.SUCCESS
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    again = tmp_path / "again.dcm"
    again.write_bytes(part10(ds))
    assert send(node, again) == Status.WARNING_ELEMENTS_DISCARDED
    other = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert not other.exists()
    with node.engine.connect() as conn:
        [duplicates] = conn.exec_driver_sql("SELECT duplicates FROM instances").scalars().all()
    assert duplicates == 1  # counted once, though the index found it, not the look-up
