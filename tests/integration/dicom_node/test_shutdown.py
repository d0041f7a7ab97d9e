"""SIGTERM to a real `infernode serve` while a sender is in the middle of a series: the node stops
accepting, gives the open association `stop_grace_s`, aborts it, and exits well within 10 s;
every instance the sender saw acknowledged is in the index."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.net import free_port
from tests.support.peers.dcmtk import DCMTK_BIN, ct_series, echoscu


def test_sigterm_during_a_send_exits_within_10_s_and_keeps_every_ack(tmp_path: Path):
    port, db = free_port(), tmp_path / "node.db"
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "database": {"url": f"sqlite:///{db}"},
        "dicom": {"port": port, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
                  "stop_grace_s": 2.0},
        "web": {"enabled": False}, "workers": {"rules": []},
    }))
    files = ct_series(tmp_path / "ct", slices=1500, size=128)
    log = (tmp_path / "node.log").open("wb")
    node = subprocess.Popen([sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    sender = None
    try:
        deadline = time.monotonic() + 60
        while echoscu(port).returncode != 0:
            assert time.monotonic() < deadline and node.poll() is None, "node did not start"
            time.sleep(0.3)
        sender = subprocess.Popen(
            [str(DCMTK_BIN / "storescu"), "-v", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
             "127.0.0.1", str(port), *map(str, files)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        took = time.monotonic() - started
        output = sender.communicate(timeout=30)[0]
    finally:
        for process in (node, sender):
            if process is not None and process.poll() is None:
                process.kill()
    assert took < 10, f"the node took {took:.1f} s to exit"
    acked = output.count("Received Store Response (Success)")
    assert 0 < acked < len(files), "the send must have been cut by the shutdown"
    with sqlite3.connect(db) as conn:
        indexed = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    assert indexed >= acked
