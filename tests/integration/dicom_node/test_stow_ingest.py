"""STOW-RS ingest on the node: a real DICOMweb client (Orthanc's plugin) stores a study, and the
same durability and refusal rules hold as for C-STORE."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pydicom
import pytest

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import CORPUS, ct_dataset, part10
from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series
from tests.support.peers.orthanc import requires_orthanc, running_orthanc

TOKEN = "stow-test-token"


@pytest.fixture
def web_node(tmp_path):
    from infernode.node import Node
    from infernode.settings import load_settings

    port = free_port()
    settings = load_settings(None, database={"url": f"sqlite:///{tmp_path / 'db'}"},
                             dicom={"port": 0, "spool_dir": str(tmp_path / "spool"),
                                    "min_free_bytes": 0, "quiet_period_s": 1,
                                    "assembly_poll_s": 0.1},
                             web={"port": port, "stow_tokens": [TOKEN]})
    node = Node.build(settings)
    node.start()
    yield node, f"http://127.0.0.1:{port}"
    node.stop()


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "infernode-test-boundary"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {media}\r\n\r\n".encode() + data + b"\r\n"
        for media, data in parts
    ) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


@requires_orthanc
def test_orthanc_stores_a_study_over_stow_rs(web_node, tmp_path):
    node, base = web_node
    ready = []
    node.ready_handlers.append(ready.append)
    extra = {"DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {
        "infernode": {"Url": f"{base}/dicom-web/",
                      "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"}}}}}
    files = ct_series(tmp_path / "src", slices=5)
    with running_orthanc(tmp_path / "orthanc", extra=extra) as orthanc:
        [study] = orthanc.upload(files)
        with orthanc.client() as http:
            r = http.post("/dicom-web/servers/infernode/stow", json={"Resources": [study]},
                          timeout=60)
            assert r.status_code == 200, r.text
    with node.engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all())
    assert set(stored) == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                           for f in files}
    deadline = time.monotonic() + 20
    while not ready and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready and ready[0].series[0].instance_count == 5


def test_stow_reports_each_refused_part_and_requires_a_token(web_node, tmp_path):
    node, base = web_node
    [good] = ct_series(tmp_path / "src", slices=1)
    body, content_type = _multipart([
        ("application/dicom", good.read_bytes()),
        ("application/dicom", b"not dicom at all"),
    ])
    url = f"{base}/dicom-web/studies"
    assert httpx.post(url, content=body, headers={"Content-Type": content_type}).status_code == 401
    r = httpx.post(url, content=body, headers={"Content-Type": content_type,
                                               "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202
    result = r.json()
    [ok] = result["00081199"]["Value"]
    assert ok["00081155"]["Value"] == [pydicom.dcmread(good).SOPInstanceUID]
    [bad] = result["00081198"]["Value"]
    assert bad["00081197"]["Value"] == [int(Status.CANNOT_UNDERSTAND)]
    assert node.index.counts()["instances"] == 1
    # Sending it again is idempotent: success, stored once.
    body, content_type = _multipart([("application/dicom", good.read_bytes())])
    r = httpx.post(url, content=body, headers={"Content-Type": content_type,
                                               "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert node.index.counts()["instances"] == 1


def test_stow_to_the_wrong_study_is_a_failure_for_that_instance(web_node, tmp_path):
    _node, base = web_node
    [good] = ct_series(tmp_path / "src", slices=1)
    body, content_type = _multipart([("application/dicom", good.read_bytes())])
    r = httpx.post(f"{base}/dicom-web/studies/1.2.3.4", content=body,
                   headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409
    [bad] = r.json()["00081198"]["Value"]
    assert bad["00081197"]["Value"] == [int(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS)]


def _stow(base: str, parts: list[bytes]) -> httpx.Response:
    body, content_type = _multipart([("application/dicom", p) for p in parts])
    return httpx.post(f"{base}/dicom-web/studies", content=body,
                      headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("case", [c for c in CORPUS if c.name in {
    "truncated-in-pixel-data", "pixel-data-short-rows", "group-0002-in-data-set",
    "sop-class-mr-on-ct", "missing-sop-instance-uid", "deflate-garbage"}], ids=lambda c: c.name)
def test_a_damaged_stow_part_is_refused_kept_and_recorded_like_a_c_store(web_node, case):
    node, base = web_node
    damaged = case.build()
    r = _stow(base, [damaged])
    assert r.status_code == 409
    [bad] = r.json()["00081198"]["Value"]
    assert bad["00081197"]["Value"] == [int(case.status)]
    [listed] = node.index.failures()
    assert (listed.record.status, listed.record.reason_code) == (case.status, case.reason_code)
    assert Path(listed.record.kept_path).read_bytes() == damaged
    assert node.index.counts()["instances"] == 0


def test_a_conflicting_stow_duplicate_is_stored_with_a_warning_reason(web_node):
    node, base = web_node
    ds = ct_dataset()
    first = part10(ds)
    ds.PatientID = "SOMEONE-ELSE"
    assert _stow(base, [first]).status_code == 200
    r = _stow(base, [part10(ds)])
    assert r.status_code == 202  # PS3.18 10.5.3: stored, with a warning
    [warned] = r.json()["00081199"]["Value"]
    assert warned["00081196"]["Value"] == [int(Status.WARNING_ELEMENTS_DISCARDED)]
    [listed] = node.index.conflicts()
    assert listed.record.differences == "patient_id"
    assert Path(listed.record.kept_path).read_bytes() == part10(ds)
