"""kill -9 of a real node process in the middle of an association, then a restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import sqlalchemy as sa
import yaml
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series, echoscu


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def _wait_for_echo(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if echoscu(port).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("node did not start:\n" + log.read_text())


def test_kill_9_mid_association_loses_nothing_acknowledged(tmp_path):
    """Every acknowledged instance has its committed row after kill -9 (SQLite WAL keeps
    commits made without their own fsync across a process crash). Then the rows of the last
    ten are removed, as a power loss does to rows committed without a WAL fsync: the restart's
    spool recovery indexes them again from the fsynced files, with their sender."""
    port = free_port()
    db = tmp_path / "node.db"
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite:///{db}"},
        "dicom": {"port": port, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
                  "quiet_period_s": 2.0, "assembly_poll_s": 0.2},
        "web": {"enabled": False},
    }))
    files = ct_series(tmp_path / "src", slices=150, size=128)
    log = tmp_path / "node.log"
    proc = _start(config, log)
    _wait_for_echo(port, proc, log)

    acknowledged: list[str] = []

    def sender() -> None:
        ae = AE(ae_title="INFERNODE_SCU")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="INFERNODE")
        assert assoc.is_established
        for f in files:
            if not assoc.is_established:
                return
            status = assoc.send_c_store(f)
            if status and status.Status == 0:
                acknowledged.append(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
        if assoc.is_established:
            assoc.release()

    thread = threading.Thread(target=sender)
    thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    thread.join(timeout=60)
    assert 20 <= len(acknowledged) < len(files), "the kill did not land mid-association"
    with sqlite3.connect(db) as conn:
        committed = {uid for (uid,) in conn.execute("SELECT sop_instance_uid FROM instances")}
        assert set(acknowledged) <= committed
        conn.executemany("DELETE FROM instances WHERE sop_instance_uid = ?",
                         [(uid,) for uid in acknowledged[-10:]])
        assert conn.total_changes == 10
    conn.close()

    proc = _start(config, log)
    try:
        _wait_for_echo(port, proc, log)
        engine = sa.create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            indexed = dict(conn.execute(sa.text(
                "SELECT sop_instance_uid, path FROM instances")).all())
            senders = set(conn.execute(sa.text(
                "SELECT DISTINCT calling_ae FROM instances")).scalars())
        assert set(acknowledged) <= set(indexed)
        assert senders == {"INFERNODE_SCU"}  # recovered rows keep their sender
        in_spool = {p.stem for p in (tmp_path / "spool").glob("*/*/*.dcm")}
        assert in_spool == set(indexed)  # no file in the spool proper without its row
        for path in indexed.values():
            ds = pydicom.dcmread(path)
            assert len(ds.PixelData) == 128 * 128 * 2  # complete, never half-written
        assert not list((tmp_path / "spool" / ".tmp").iterdir())
        # Slots hold nothing after recovery: a complete one (its mark matches) is placed and
        # indexed, a store cut before its mark or fsync ended is kept under .rejected/ with a
        # record.
        slots = list((tmp_path / "spool" / ".slots").iterdir())
        assert slots and all(p.stat().st_size == 0 for p in slots)
        # The persisted quiet-period timer still completes the study after the restart.
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                state = conn.execute(sa.text("SELECT state FROM studies")).scalar_one()
            if state == "emitted":
                break
            time.sleep(0.2)
        assert state == "emitted"
        engine.dispose()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
