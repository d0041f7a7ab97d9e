"""kill -9 of a real node process while its results wait for a PACS that is down; after a
restart, with the PACS up, every result is delivered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
import yaml

from infernode.samples import write_sample_studies
from tests.support.net import free_port
from tests.support.peers.dcmtk import echoscu, storescu
from tests.support.peers.orthanc import requires_orthanc, running_orthanc
from workers.config import WorkersConfig


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait(what: str, predicate, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")


def _rows(db: Path, sql: str) -> list[sa.Row]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    except sa.exc.OperationalError:
        return []  # tables not there yet
    finally:
        engine.dispose()


@requires_orthanc
def test_results_survive_a_crash_while_the_pacs_is_down(tmp_path):
    pacs_port, node_port = free_port(), free_port()
    rules = [r.model_copy(update={"quiet_period_s": 3.0}).model_dump(mode="json")
             for r in WorkersConfig().rules]
    db = tmp_path / "node.db"
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "database": {"url": f"sqlite:///{db}"},
        "dicom": {"port": node_port, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
                  "quiet_period_s": 3.0, "assembly_poll_s": 0.2},
        "web": {"enabled": False},
        "workers": {"rules": rules, "delivery": {
            "poll_interval_s": 0.5, "lease_s": 5,
            "backoff": {"base_s": 1, "factor": 1, "max_delay_s": 1, "jitter": 0},
            "destinations": [{"type": "dicom", "name": "pacs", "host": "127.0.0.1",
                              "port": pacs_port, "called_ae": "ORTHANC",
                              "connect_timeout_s": 1}]}},
    }))
    [(identity, _)] = write_sample_studies(tmp_path / "samples", with_mr=False)[:1]
    log = tmp_path / "node.log"
    node = _start(config, log)
    try:
        _wait("the node", lambda: echoscu(node_port).returncode == 0, 60, log)
        files = sorted((tmp_path / "samples" / "study1").glob("*.dcm"))
        assert storescu(node_port, files).returncode == 0
        failed = _wait("failed delivery attempts", lambda: [
            r for r in _rows(db, "SELECT attempts FROM deliveries WHERE state = 'pending'")
            if r.attempts >= 2], 120, log)
        assert failed
        os.kill(node.pid, signal.SIGKILL)
        node.wait()
        outputs = _rows(db, "SELECT uid, kind FROM outputs WHERE kind LIKE 'dicom%'")
        # SEG + SR + KOS of the haemorrhage study, its overlay series and its GSPS
        assert sorted(k for _, k in outputs).count("dicom") == 3
        assert {k for _, k in outputs} == {"dicom", "dicom-overlay", "dicom-gsps"}
        with running_orthanc(tmp_path / "orthanc", extra={"DicomPort": pacs_port}) as pacs:
            node = _start(config, log)
            def all_delivered() -> bool:
                states = [r.state for r in _rows(db, "SELECT state FROM deliveries")]
                return len(states) == len(outputs) and set(states) == {"delivered"}

            _wait("delivery after the restart", all_delivered, 120, log)
            for uid, _ in outputs:
                assert pacs.find_instance(uid) is not None
            assert len(pacs.instances()) == len(outputs)  # each exactly once
            [study] = pacs.get("/studies?expand")
            assert study["MainDicomTags"]["StudyInstanceUID"] == identity.study_instance_uid
    finally:
        if node.poll() is None:
            node.terminate()
            node.wait(timeout=30)
