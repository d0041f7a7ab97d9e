"""The whole node in embedded mode: C-STORE from DCMTK -> assembly -> routing -> a finished job."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests.support.peers.dcmtk import ct_series, storescu


def _jobs(node):
    with node.engine.connect() as conn:
        return conn.execute(sa.text("SELECT pipeline, state FROM jobs")).all()


def test_a_head_ct_sent_by_storescu_ends_as_a_finished_ich_job(node_factory, tmp_path):
    node = node_factory()
    files = ct_series(tmp_path / "src", slices=12)
    assert storescu(node.server.port, files).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = _jobs(node)
        if jobs and all(state == "succeeded" for _, state in jobs):
            break
        time.sleep(0.2)
    assert [(p, s) for p, s in _jobs(node)] == [("ich", "succeeded")]


def test_a_localizer_only_study_is_recorded_as_not_routed(node_factory, tmp_path):
    import pydicom

    node = node_factory()
    files = ct_series(tmp_path / "src", slices=2)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(f)
    assert storescu(node.server.port, files).returncode == 0
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline and not rows:
        with node.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM routing_decisions")).mappings().all()
        time.sleep(0.2)
    assert rows, "no routing decision recorded"
    [decision] = rows
    assert not decision["routed"]
    assert decision["reason"]
    assert _jobs(node) == []
