"""Recovery of abandoned spool slots (`dicom_node.recovery`, docs/DICOM.md Durability). A slot
left by a previous process is simulated with a second `Spool` on the same folder that stages the
bytes (written, marked, fsynced) and never places them: what a power loss that took the rename
of an acknowledged instance leaves. Complete slots go to their final path and are indexed;
identical repeats are dropped; cut, unmarked and conflicting slots are quarantined with a
record; empty slots and the slots of stores in flight are left alone."""

from __future__ import annotations

from pathlib import Path

import pydicom

from dicom_node.recovery import recover_unindexed
from dicom_node.spool import Spool, Staged
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10


def _abandon(root: Path, raw: bytes) -> Staged:
    """A slot written by another (dead) process, never placed."""
    staged = Spool(root, 0).stage(raw)
    assert staged.written.result() is True
    return staged


def _rows(node) -> dict[str, str]:
    with node.engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all())


def test_a_lost_rename_is_redone_and_indexed(node_factory):
    node = node_factory()
    ds = ct_dataset(seed=1)
    raw = part10(ds)
    slot = _abandon(node.spool.root, raw).slot

    report = recover_unindexed(node.ingestor)

    final = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert (report.slots_placed, report.indexed, report.slots_quarantined) == (1, 1, 0)
    assert final.read_bytes() == raw and not slot.exists()
    assert _rows(node) == {ds.SOPInstanceUID: str(final)}
    assert node.spool.kept_records() == []
    again = recover_unindexed(node.ingestor)
    assert (again.slots_placed, again.indexed) == (0, 0)


def test_an_identical_repeat_is_dropped_and_a_different_one_quarantined(node_factory):
    node = node_factory()
    ds = ct_dataset(seed=2)
    raw = part10(ds)
    final = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert node.spool.write(raw, final, replace=False)
    same = _abandon(node.spool.root, raw).slot  # e.g. a lost unlink after the link fallback
    ds.SeriesDescription = "other content, same SOP Instance UID"
    other = _abandon(node.spool.root, part10(ds)).slot

    report = recover_unindexed(node.ingestor)

    assert (report.slots_dropped, report.slots_quarantined, report.slots_placed) == (1, 1, 0)
    assert not same.exists() and not other.exists()
    assert final.read_bytes() == raw
    [record] = node.spool.kept_records()
    assert record["reason_code"] == "conflicting_slot"
    assert record["sop_instance_uid"] == ds.SOPInstanceUID
    assert pydicom.dcmread(str(record["path"])).SeriesDescription.startswith("other content")


def test_cut_and_unmarked_slots_are_quarantined_never_indexed(node_factory):
    node = node_factory()
    ds = ct_dataset(seed=3)
    raw = part10(ds)
    cut = _abandon(node.spool.root, raw).slot
    with cut.open("r+b") as f:
        f.truncate(len(raw) - 100)  # the header still reads; the mark tells it is short
    unmarked = node.spool.slots_dir / "0-unmarked.slot"
    unmarked.write_bytes(raw)  # complete bytes, but no mark: a store that died before it
    empty = node.spool.slots_dir / "0-empty.slot"
    empty.touch()

    report = recover_unindexed(node.ingestor)

    assert (report.slots_quarantined, report.slots_placed, report.indexed) == (2, 0, 0)
    assert _rows(node) == {}
    records = node.spool.kept_records()
    assert [r["reason_code"] for r in records] == ["incomplete_slot"] * 2
    assert all(r["found_by"] == "recovery" and r["sop_instance_uid"] is None for r in records)
    assert sorted(Path(str(r["path"])).stat().st_size for r in records) == [
        len(raw) - 100, len(raw)]  # the bytes are kept, not deleted
    assert empty.exists()
    assert len(node.index.failures()) == 2


def test_a_slot_in_flight_is_left_alone(node_factory):
    node = node_factory()
    raw = part10(ct_dataset(seed=4))
    staged = node.spool.stage(raw)  # this process's store, between write and place
    staged.written.result()
    report = recover_unindexed(node.ingestor)
    assert (report.slots_placed, report.slots_quarantined) == (0, 0)
    assert staged.slot.read_bytes() == raw
    node.spool.discard(staged)


def test_a_restart_places_abandoned_slots_before_it_accepts(node_factory, tmp_path: Path):
    first = node_factory()
    ds = ct_dataset(seed=5)
    raw = part10(ds)
    db_url = str(first.engine.url)
    spool_dir = first.settings.dicom.spool_dir
    first.stop()
    slot = _abandon(Path(spool_dir), raw).slot
    second = node_factory(db_url=db_url, spool_dir=str(spool_dir))
    final = second.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert _rows(second) == {ds.SOPInstanceUID: str(final)}
    assert not slot.exists() and final.read_bytes() == raw


def _rename_older(slot: Path) -> Path:
    """The same slot under a name older than any other (pool names are given when a slot is
    made, not when it is written: a slot made earlier may be written later)."""
    older = slot.with_name(f"{0:020d}-older{slot.suffix}")
    slot.rename(older)  # the mark is an attribute of the inode: it stays
    return older


def test_the_indexed_version_wins_over_an_older_named_conflicting_slot(node_factory):
    # Acknowledged: v1 (its row committed, its rename lost). Answered as a conflicting
    # duplicate: v2 (its lazy slot removal lost too). After the power loss the file at the final
    # path must be v1's, the one the row describes, whatever the slot names say.
    node = node_factory()
    ds = ct_dataset(seed=6)
    v1 = part10(ds)
    final = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert node.spool.write(v1, final, replace=False)
    assert recover_unindexed(node.ingestor).indexed == 1  # the row of v1
    lost_rename = node.spool.slots_dir / f"{9:020d}-acknowledged.slot"
    final.rename(lost_rename)
    ds.PatientID = "other patient, same SOP Instance UID"
    v2 = part10(ds)
    conflicting = _rename_older(_abandon(node.spool.root, v2).slot)

    report = recover_unindexed(node.ingestor)

    assert final.read_bytes() == v1
    assert (report.slots_placed, report.slots_quarantined) == (1, 1)
    assert not lost_rename.exists() and not conflicting.exists()
    [record] = node.spool.kept_records()
    assert record["reason_code"] == "conflicting_slot"
    assert Path(str(record["path"])).read_bytes() == v2


def test_a_slot_of_an_instance_indexed_in_another_study_is_kept_not_deleted(node_factory):
    # A store cut after its fsync whose SOP Instance UID is indexed under another study: the
    # receive path keeps such an instance under .rejected/conflicts; recovery must not place it
    # only to remove it as a copy (its bytes are different, and would be gone unread).
    node = node_factory()
    ds = ct_dataset(seed=7)
    first = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert node.spool.write(part10(ds), first, replace=False)
    assert recover_unindexed(node.ingestor).indexed == 1
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    moved = part10(ds)
    slot = _abandon(node.spool.root, moved).slot

    report = recover_unindexed(node.ingestor)

    assert (report.slots_placed, report.removed_duplicates, report.slots_quarantined) == (0, 0, 1)
    assert not slot.exists()
    assert _rows(node) == {ds.SOPInstanceUID: str(first)}
    [record] = node.spool.kept_records()
    assert record["reason_code"] == "conflicting_slot"
    assert Path(str(record["path"])).read_bytes() == moved
