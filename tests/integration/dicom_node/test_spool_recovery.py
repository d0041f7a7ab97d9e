"""Start-up recovery (`dicom_node.recovery`, docs/DICOM.md Durability): spool files whose index
rows are gone (what a power loss does to rows committed without their own WAL fsync) are indexed
again from their own bytes, with the sender's AE title; a file that no longer validates is
quarantined under `.rejected/` with a record. DCMTK storescu is the sender; the index is SQLite."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pydicom
import sqlalchemy as sa

from dicom_node.recovery import recover_unindexed
from tests.support.peers.dcmtk import ct_series, storescu


def _rows(node) -> dict[str, tuple[str, str | None]]:
    with node.engine.connect() as conn:
        return {uid: (path, ae) for uid, path, ae in conn.exec_driver_sql(
            "SELECT sop_instance_uid, path, calling_ae FROM instances").all()}


def _lose_rows(node, uids: list[str], *, series: str | None = None) -> None:
    """What a lost WAL tail leaves: the files, without their rows."""
    with node.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM instances WHERE sop_instance_uid IN :uids")
                     .bindparams(sa.bindparam("uids", expanding=True)), {"uids": uids})
        if series is not None:
            conn.execute(sa.text("DELETE FROM series WHERE series_instance_uid = :s"),
                         {"s": series})


def test_unindexed_spool_files_are_indexed_again_and_damaged_ones_quarantined(
        node_factory, tmp_path: Path):
    node = node_factory(peers=[{"ae_title": "CT_SCANNER_7"}])
    files = ct_series(tmp_path / "src", slices=6, size=32)
    done = storescu(node.server.port, files, calling="CT_SCANNER_7")
    assert done.returncode == 0, done.stderr[-2000:]
    before = _rows(node)
    assert len(before) == 6
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    lost = [str(h.SOPInstanceUID) for h in headers[3:]]
    _lose_rows(node, lost, series=str(headers[0].SeriesInstanceUID))
    damaged = Path(before[lost[0]][0])
    damaged.write_bytes(damaged.read_bytes()[:600])  # cut inside the header
    stray = damaged.parent / "notes.dcm"  # not a UID: no file of the receive path
    stray.write_bytes(b"left alone")

    report = recover_unindexed(node.ingestor)

    assert (report.indexed, report.quarantined, report.removed_duplicates) == (2, 1, 0)
    after = _rows(node)
    assert set(after) == set(before) - {lost[0]}
    for uid in lost[1:]:
        assert after[uid] == (before[uid][0], "CT_SCANNER_7")  # the sender, from File Meta
    assert stray.exists() and not damaged.exists()
    [record] = node.spool.kept_records()
    assert record["sop_instance_uid"] == lost[0] and record["found_by"] == "recovery"
    assert Path(str(record["path"])).stat().st_size == 600  # the damaged bytes, kept
    [failure] = node.index.failures()
    assert failure.record.sop_instance_uid == lost[0]
    assert failure.record.status == 0xC000  # Cannot Understand, as on receipt
    with node.engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT instance_count FROM series").scalar_one()
    assert count == 2  # the lost series row rebuilt from the recovered instances
    again = recover_unindexed(node.ingestor)
    assert (again.indexed, again.quarantined) == (0, 0)


def test_young_files_are_left_for_a_later_pass(node_factory, tmp_path: Path):
    node = node_factory()
    files = ct_series(tmp_path / "src", slices=2, size=32)
    assert storescu(node.server.port, files).returncode == 0
    uids = list(_rows(node))
    _lose_rows(node, uids)
    young = recover_unindexed(node.ingestor, min_age_s=3600)
    assert (young.indexed, young.skipped_young) == (0, 2)
    later = recover_unindexed(node.ingestor, min_age_s=3600, now=lambda: time.time() + 7200)
    assert later.indexed == 2 and set(_rows(node)) == set(uids)


def test_a_restart_recovers_before_it_accepts(node_factory, tmp_path: Path):
    first = node_factory()
    files = ct_series(tmp_path / "src", slices=3, size=32)
    assert storescu(first.server.port, files).returncode == 0
    uids = list(_rows(first))
    _lose_rows(first, uids)
    db_url = str(first.engine.url)
    spool = first.settings.dicom.spool_dir
    first.stop()
    second = node_factory(db_url=db_url, spool_dir=str(spool))
    assert set(_rows(second)) == set(uids)
    kept = [json.loads(p.read_text()) for p in Path(spool, ".rejected").glob("*.json")]
    assert kept == []
    assert not any(os.scandir(Path(spool, ".tmp")))
    assert all(p.stat().st_size == 0 for p in Path(spool, ".slots").iterdir())
