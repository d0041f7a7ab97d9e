"""The node's /metrics with `dicom.acceptor_processes: 2` on a real `infernode serve`: DCMTK
storescu sends over many associations (the kernel spreads them over both processes), and the
totals on the node's /metrics (the node's own samples plus the acceptor process's, labelled
`acceptor="1"`) equal what was sent and what was indexed; the acceptor process's audit
recorder is exported the same way. After the acceptor process is killed and restarted, its
earlier counts stay and the new ones add to them."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from tests.support.net import free_port
from tests.support.peers.dcmtk import DCMTK_BIN, ct_series, echoscu
from tests.support.waiting import wait_until

CHILD_LISTENING = re.compile(r"acceptor process 1 listening port=\d+ pid=(\d+)")
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def child_pids(log: Path) -> list[int]:
    return [int(m) for m in CHILD_LISTENING.findall(log.read_text(errors="replace"))]


def samples(web_port: int, name: str) -> dict[str, float]:
    """The samples of one metric on the node's /metrics: label text -> value."""
    found = {}
    for line in httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            found[match.group(2) or ""] = float(match.group(3))
    return found


def stored(web_port: int) -> dict[str, float]:
    return {labels: value for labels, value in
            samples(web_port, "infernode_instances_received_total").items()
            if 'outcome="stored"' in labels}


def send(port: int, files: list[Path], associations: int) -> None:
    """`files` over `associations` storescu runs, four at a time."""
    env = {**os.environ, "TCP_NODELAY": "1"}

    def one(part: int) -> None:
        result = subprocess.run(
            [str(DCMTK_BIN / "storescu"), "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
             "127.0.0.1", str(port), *map(str, files[part::associations])],
            capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(associations)))


def indexed_bytes(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        count, size = conn.execute("SELECT count(*), sum(size_bytes) FROM instances").fetchone()
    return int(count), int(size or 0)


def test_the_node_metrics_count_what_both_processes_received(tmp_path: Path):
    port, web_port, db = free_port(), free_port(), tmp_path / "node.db"
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "database": {"url": f"sqlite:///{db}"},
        "dicom": {"port": port, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
                  "stop_grace_s": 2.0, "acceptor_processes": 2},
        "web": {"enabled": True, "port": web_port}, "workers": {"rules": []},
    }))
    first = ct_series(tmp_path / "first", slices=40, size=32, seed=1)
    second = ct_series(tmp_path / "second", slices=12, size=32, seed=2)
    log_path = tmp_path / "node.log"
    node = subprocess.Popen([sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "TCP_NODELAY": "1"})
    try:
        wait_until(lambda: node.poll() is None and echoscu(port).returncode == 0, 60,
                   "the node accepts")
        wait_until(lambda: child_pids(log_path), 60, "the acceptor process listens")
        first_child = child_pids(log_path)[-1]

        # 20 associations: all in one process has a probability of 2 * 2**-20.
        send(port, first, associations=20)
        wait_until(lambda: sum(stored(web_port).values()) == 40, 30,
                   "the node's /metrics counts all 40 instances")
        by_process = stored(web_port)
        assert set(by_process) == {'outcome="stored"', 'acceptor="1",outcome="stored"'}
        assert all(value > 0 for value in by_process.values()), by_process
        assert sum(samples(web_port, "infernode_store_seconds_count").values()) == 40
        count, size = indexed_bytes(db)
        assert count == 40
        assert sum(samples(web_port, "infernode_bytes_received_total").values()) == size
        assert samples(web_port, "infernode_active_associations").keys() == {
            "", 'acceptor="1"'}
        child_before = by_process['acceptor="1",outcome="stored"']
        # The acceptor process's audit recorder (its associations' events) is exported too.
        wait_until(lambda: samples(web_port, "infernode_audit_events_written_total").get(
            'acceptor="1"', 0) > 0, 30, "the acceptor process's audit events counted")
        assert samples(web_port, "infernode_audit_events_lost_total").keys() == {
            "", 'acceptor="1"'}

        # A killed acceptor process: its counts stay, its successor's add to them.
        os.kill(first_child, signal.SIGKILL)
        wait_until(lambda: child_pids(log_path)[-1] != first_child, 60,
                   "the acceptor process restarted")
        send(port, second, associations=12)
        wait_until(lambda: sum(stored(web_port).values()) == 52, 30,
                   "the node's /metrics counts all 52 instances")
        assert stored(web_port)['acceptor="1",outcome="stored"'] >= child_before
        assert indexed_bytes(db)[0] == 52
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        for pid in child_pids(log_path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
