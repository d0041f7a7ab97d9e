"""A real PACS (Orthanc) sends a study to the node over C-STORE."""

from __future__ import annotations

import time

import pydicom

from tests.support.peers.dcmtk import ct_series
from tests.support.peers.orthanc import requires_orthanc, running_orthanc


@requires_orthanc
def test_orthanc_sends_a_study_and_every_instance_is_indexed(node_factory, tmp_path):
    node = node_factory(peers=[{"ae_title": "ORTHANC", "hosts": ["127.0.0.1", "::1"]}])
    ready = []
    node.ready_handlers.append(ready.append)
    modalities = {"infernode": ("INFERNODE", "127.0.0.1", node.server.port)}
    with running_orthanc(tmp_path / "orthanc", modalities=modalities) as orthanc:
        files = ct_series(tmp_path / "src", slices=8)
        [study_id] = orthanc.upload(files)
        result = orthanc.send_to_modality("infernode", [study_id])
        assert result["FailedInstancesCount"] == 0
    with node.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sop_instance_uid, calling_ae FROM instances").all()
    assert {r[0] for r in rows} == {
        pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {r[1] for r in rows} == {"ORTHANC"}
    deadline = time.monotonic() + 20
    while not ready and time.monotonic() < deadline:
        time.sleep(0.1)
    [event] = ready
    assert event.series[0].instance_count == 8
    assert event.series[0].calling_ae == "ORTHANC"
