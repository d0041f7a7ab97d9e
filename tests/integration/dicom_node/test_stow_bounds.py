"""STOW-RS bounded: the body streams to disk under a size limit (413 beyond it, nothing kept),
storing runs off the event loop (`/health` answers during a large request), and an instance of
another study than the URL's is refused before anything of it is stored."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pydicom
import uvicorn
from fastapi import FastAPI

from dicom_node.dicomweb.stow_server import StowService, create_stow_router
from tests.integration.dicom_node.test_stow_ingest import TOKEN, _multipart, web_node  # noqa: F401
from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series


def _serve(app: FastAPI) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def _post(base: str, files: list[Path], study: str | None = None) -> httpx.Response:
    body, content_type = _multipart([("application/dicom", f.read_bytes()) for f in files])
    url = f"{base}/dicom-web/studies" + (f"/{study}" if study else "")
    return httpx.post(url, content=body, timeout=120,
                      headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})


def test_a_body_over_the_limit_gets_413_and_leaves_nothing(node_factory, tmp_path: Path):
    node = node_factory()
    app = FastAPI()
    service = StowService(node.ingestor, ae_title="INFERNODE", max_body_bytes=100_000)
    app.include_router(create_stow_router(service, (TOKEN,)))
    server, base = _serve(app)
    try:
        small = ct_series(tmp_path / "small", slices=1, size=64)   # ~9 KiB
        big = ct_series(tmp_path / "big", slices=4, size=128)      # ~130 KiB in all
        assert _post(base, small).status_code == 200
        assert _post(base, big).status_code == 413

        def chunks():  # no Content-Length: the limit holds while streaming too
            yield _multipart([("application/dicom", f.read_bytes()) for f in big])[0]

        content_type = _multipart([])[1]
        r = httpx.post(f"{base}/dicom-web/studies", content=chunks(), timeout=60,
                       headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 413
    finally:
        server.should_exit = True
    assert node.index.counts()["instances"] == 1
    assert not list((node.spool.root / ".tmp").iterdir())


def test_health_answers_while_a_large_request_is_stored(web_node, tmp_path: Path):  # noqa: F811
    node, base = web_node
    files = ct_series(tmp_path / "src", slices=60, size=512)  # ~30 MiB
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: result.update(r=_post(base, files)))
    sender.start()
    worst, polls = 0.0, 0
    while sender.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200
        worst, polls = max(worst, time.monotonic() - started), polls + 1
        time.sleep(0.02)
    sender.join()
    assert result["r"].status_code == 200
    assert node.index.counts()["instances"] == 60
    assert polls >= 5  # the request lasted long enough for the check to mean something
    assert worst < 0.75, f"/health took {worst:.2f} s during a STOW-RS request"


def test_another_study_is_refused_before_it_is_stored(web_node, tmp_path: Path):  # noqa: F811
    node, base = web_node
    files = ct_series(tmp_path / "src", slices=2)
    r = _post(base, files, study="1.2.826.0.1.3680043.10.1563.404")
    assert r.status_code == 409
    assert node.index.counts()["instances"] == 0
    study_dirs = [p for p in node.spool.root.iterdir() if not p.name.startswith(".")]
    assert study_dirs == []


def test_a_large_part_is_never_held_whole_in_memory(node_factory, tmp_path: Path):
    """A 32 MiB part goes from the spooled body to its spool slot a megabyte at a time and is
    read through a mapping: the Python heap peaks at a few megabytes while it is stored, and
    the stored file is the part, bit for bit."""
    node = node_factory()
    service = StowService(node.ingestor, ae_title="INFERNODE")
    ds = pydicom.dcmread(ct_series(tmp_path / "src", slices=1, size=64)[0])
    ds.Rows = ds.Columns = 4096
    ds.PixelData = np.arange(4096 * 4096, dtype=np.uint16).tobytes()  # 32 MiB
    part = tmp_path / "big.dcm"
    ds.save_as(part, enforce_file_format=True)
    body, content_type = _multipart([("application/dicom", part.read_bytes())])
    spooled = tmp_path / "body"
    spooled.write_bytes(body)
    del body
    tracemalloc.start()
    try:
        status, response = service.store_file(spooled, content_type, study_uid=None,
                                              client="STOW-RS", peer_address=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200, response
    assert peak < 8 * 1024**2, f"peak {peak / 1024**2:.1f} MiB while storing a 32 MiB part"
    [stored] = _indexed_paths(node)
    assert Path(stored).read_bytes() == part.read_bytes()


def _indexed_paths(node) -> list[str]:
    with node.engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT path FROM instances")]


def test_a_part_of_another_study_is_never_sealed_into_the_spool(node_factory, tmp_path: Path,
                                                                 monkeypatch):
    """With a study in the URL, a part's header is checked before its slot is marked and
    fsynced: a part of another study costs no flush, and its slot is removed."""
    from dicom_node.spool import SlotWriter

    node = node_factory()
    service = StowService(node.ingestor, ae_title="INFERNODE")
    finished: list[object] = []
    finish = SlotWriter.finish
    monkeypatch.setattr(SlotWriter, "finish", lambda self: finished.append(self) or finish(self))
    [src] = ct_series(tmp_path / "src", slices=1, size=64)
    body, content_type = _multipart([("application/dicom", src.read_bytes())])
    spooled = tmp_path / "body"
    spooled.write_bytes(body)

    status, _ = service.store_file(spooled, content_type, study_uid="1.2.826.0.1.3680043.10.404",
                                   client="STOW-RS", peer_address=None)
    assert status == 409
    assert finished == []
    assert [p for p in (node.spool.root / ".slots").rglob("*") if p.is_file()
            and p.stat().st_size] == []

    status, _ = service.store_file(spooled, content_type,
                                   study_uid=pydicom.dcmread(src).StudyInstanceUID,
                                   client="STOW-RS", peer_address=None)
    assert status == 200
    assert len(finished) == 1


def test_an_empty_part_is_refused_alone(node_factory, tmp_path: Path):
    """An empty part among good ones: refused with 0xC000 and recorded; the others stored
    (202), not the whole request failed."""
    node = node_factory()
    service = StowService(node.ingestor, ae_title="INFERNODE")
    [good] = ct_series(tmp_path / "src", slices=1, size=64)
    body, content_type = _multipart([("application/dicom", good.read_bytes()),
                                     ("application/dicom", b"")])
    spooled = tmp_path / "body"
    spooled.write_bytes(body)
    status, response = service.store_file(spooled, content_type, study_uid=None,
                                          client="STOW-RS", peer_address=None)
    assert status == 202
    [failed] = response["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert node.index.counts()["instances"] == 1
    assert len(node.index.failures()) == 1


def test_a_part_refused_for_want_of_space_names_its_instance(node_factory, tmp_path: Path):
    node = node_factory()
    service = StowService(node.ingestor, ae_title="INFERNODE")
    [src] = ct_series(tmp_path / "src", slices=1, size=64)
    body, content_type = _multipart([("application/dicom", src.read_bytes())])
    spooled = tmp_path / "body"
    spooled.write_bytes(body)
    node.ingestor.spool.min_free_bytes = 1 << 60  # no room left
    status, response = service.store_file(spooled, content_type, study_uid=None,
                                          client="STOW-RS", peer_address=None)
    assert status == 409
    [failed] = response["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA700]
    assert failed["00081155"]["Value"] == [pydicom.dcmread(src).SOPInstanceUID]
