"""`dicom.acceptor_processes: 2` on a real `infernode serve`: two processes accept on one port
(SO_REUSEPORT), the index is the meeting point. Four concurrent DCMTK senders each send a quarter
of a series: every instance is indexed, once, and the audit trail (whose association events
carry the number of the process that received them) shows that both processes received. A
killed acceptor process is restarted and the port keeps accepting; SIGTERM stops the node and
its acceptor process within 10 s. Each process has its own spool slot folder, and start-up
recovery takes the abandoned slots of every one."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from dicom_node.recovery import recover_unindexed
from dicom_node.spool import Spool
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.support.net import free_port
from tests.support.peers.dcmtk import DCMTK_BIN, ct_series, echoscu

SLICES = 80
CHILD_LISTENING = re.compile(r"acceptor process 1 listening port=\d+ pid=(\d+)")


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.2)


def child_pids(log: Path) -> list[int]:
    return [int(m) for m in CHILD_LISTENING.findall(log.read_text(errors="replace"))]


def audit_rows(db: Path, category: str) -> list[tuple[str, dict]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT action, detail FROM audit_events WHERE category = ? "
                            "ORDER BY id", (category,)).fetchall()
    return [(action, json.loads(detail)) for action, detail in rows]


def accepting_processes(db: Path) -> list[int]:
    return [d.get("acceptor", -1) for a, d in audit_rows(db, "association") if a == "accepted"]


def indexed(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM instances").fetchone()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_two_acceptor_processes_share_the_port_index_once_restart_and_stop(tmp_path: Path):
    port, db = free_port(), tmp_path / "node.db"
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "database": {"url": f"sqlite:///{db}"},
        "dicom": {"port": port, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
                  "stop_grace_s": 2.0, "acceptor_processes": 2},
        "audit": {"poll_s": 0.2},
        "web": {"enabled": False}, "workers": {"rules": []},
    }))
    files = ct_series(tmp_path / "ct", slices=SLICES, size=64)
    log_path = tmp_path / "node.log"
    log = log_path.open("wb")
    env = {**os.environ, "TCP_NODELAY": "1"}
    node = subprocess.Popen([sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    senders: list[subprocess.Popen[str]] = []
    try:
        wait_until(lambda: node.poll() is None and echoscu(port).returncode == 0, 60,
                   "the node accepts")
        wait_until(lambda: child_pids(log_path), 60, "the acceptor process listens")
        first_child = child_pids(log_path)[-1]

        # Four concurrent associations, a quarter of the series each.
        for part in range(4):
            senders.append(subprocess.Popen(
                [str(DCMTK_BIN / "storescu"), "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                 "127.0.0.1", str(port), *map(str, files[part::4])],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
        for sender in senders:
            output = sender.communicate(timeout=120)[0]
            assert sender.returncode == 0, output
        # More associations, so that the kernel's spreading reaches both processes with
        # certainty for practical purposes (all 24 in one process: p = 2 * 2**-24).
        for _ in range(20):
            assert echoscu(port).returncode == 0
        wait_until(lambda: indexed(db) == SLICES, 60, "every instance indexed")
        wait_until(lambda: len(accepting_processes(db)) >= 25, 30, "associations audited")
        wait_until(lambda: sum(d["count"] for _, d in audit_rows(db, "instances")) >= SLICES,
                   30, "instances audited")

        assert indexed(db) == SLICES
        received = [d for a, d in audit_rows(db, "instances") if a == "received"]
        assert sum(d["count"] for d in received) == SLICES
        assert sorted(u for d in received for u in d["sop_instance_uids"]) == sorted(
            {u for d in received for u in d["sop_instance_uids"]})
        assert all(d["duplicates"] == 0 for d in received)
        assert set(accepting_processes(db)) == {0, 1}
        assert {d["acceptor"] for d in received} <= {0, 1}
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT instance_count FROM series").fetchall() == [(SLICES,)]
        assert any((tmp_path / "spool" / ".slots" / "1").glob("*.slot"))

        # A killed acceptor process is restarted; the port accepts all along.
        os.kill(first_child, signal.SIGKILL)
        wait_until(lambda: child_pids(log_path)[-1] != first_child, 60,
                   "the acceptor process restarted")
        second_child = child_pids(log_path)[-1]
        assert alive(second_child)
        before = len(accepting_processes(db))
        for _ in range(16):
            assert echoscu(port).returncode == 0
        wait_until(lambda: len(accepting_processes(db)) >= before + 16, 30,
                   "echo associations audited")
        assert 1 in accepting_processes(db)[before:], "the restarted process receives"
        text = log_path.read_text(errors="replace")
        assert "acceptor process 1 exited (code -9), restarting" in text

        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        took = time.monotonic() - started
        wait_until(lambda: not alive(second_child), 10, "the acceptor process exits")
    finally:
        for process in (node, *senders):
            if process.poll() is None:
                process.kill()
        for pid in child_pids(log_path):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert took < 10, f"the node took {took:.1f} s to exit"
    assert node.returncode == 0
    assert "acceptor process 1 stopped" in log_path.read_text(errors="replace")


def test_each_process_pools_its_own_slots_and_recovery_takes_every_folder(node_factory):
    node = node_factory()
    root = node.spool.root
    child = Spool(root, 0, slot_folder=".slots/1")
    child.prepare()
    assert child._free and {p.parent for p in child._free} == {root / ".slots" / "1"}
    assert {p.parent for p in node.spool._free} == {root / ".slots"}
    ds = ct_dataset(seed=7)
    raw = part10(ds)
    left = child.stage(raw)  # acknowledged, then its rename lost with the child process
    assert left.written.result() is True
    restarted = Spool(root, 0)  # the node's process at its next start
    restarted.prepare()
    assert not {p for p in restarted._free if p.parent != root / ".slots"}
    assert restarted.abandoned_slots() == [left.slot]

    report = recover_unindexed(node.ingestor)

    final = node.spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert (report.slots_placed, report.indexed, report.slots_quarantined) == (1, 1, 0)
    assert final.read_bytes() == raw and not left.slot.exists()
