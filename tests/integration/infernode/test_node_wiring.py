"""Settings that take effect only through the node's wiring: the inflate limit of the receive
path, the STOW-RS body limit, and the protocol library's log level."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from dicom_node.status import Status
from tests.integration.dicom_node.scp.test_deflate_limit import _deflated_ct, send_deflated
from tests.integration.dicom_node.test_stow_ingest import TOKEN, _multipart
from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series, storescu


def test_max_inflated_bytes_is_the_limit_of_a_node_built_from_settings(node_factory,
                                                                      tmp_path: Path):
    node = node_factory(max_inflated_bytes=4 * 1024**2)
    status, comment = send_deflated(node.server.port, _deflated_ct(tmp_path / "b", 2048))
    assert status == Status.CANNOT_UNDERSTAND
    assert "inflates beyond 4194304 bytes" in comment
    default = node_factory()
    status, _ = send_deflated(default.server.port, _deflated_ct(tmp_path / "d", 2048))
    assert status == Status.SUCCESS


def test_stow_max_body_bytes_limits_the_node_web_service(tmp_path: Path):
    from infernode.node import Node
    from infernode.settings import load_settings

    port = free_port()
    settings = load_settings(None, database={"url": f"sqlite:///{tmp_path / 'db'}"},
                             dicom={"port": 0, "spool_dir": str(tmp_path / "spool"),
                                    "min_free_bytes": 0, "stow_max_body_bytes": 100_000},
                             web={"port": port, "stow_tokens": [TOKEN]})
    node = Node.build(settings)
    node.start()
    try:
        def post(files: list[Path]) -> int:
            body, content_type = _multipart([("application/dicom", f.read_bytes())
                                             for f in files])
            return httpx.post(f"http://127.0.0.1:{port}/dicom-web/studies", content=body,
                              timeout=60, headers={"Content-Type": content_type,
                                                   "Authorization": f"Bearer {TOKEN}"}
                              ).status_code
        assert post(ct_series(tmp_path / "small", slices=1, size=64)) == 200
        assert post(ct_series(tmp_path / "big", slices=4, size=128)) == 413
        assert node.index.counts()["instances"] == 1
    finally:
        node.stop()


@pytest.mark.parametrize(("level", "logged"), [("WARNING", False), ("INFO", True)])
def test_protocol_log_level_decides_the_per_instance_lines(node_factory, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture,
                                                           level: str, logged: bool):
    # pynetdicom's upper layer; the native one: tests/integration/dicom_node/scp/
    # test_native_upper_layer.py
    node = node_factory(protocol_log_level=level, upper_layer="pynetdicom")
    assert logging.getLogger("pynetdicom").level == logging.getLevelName(level)
    files = ct_series(tmp_path / "src", slices=2, size=32)
    assert storescu(node.server.port, files).returncode == 0
    lines = [r for r in caplog.records
             if r.name.startswith("pynetdicom") and "Received Store Request" in r.getMessage()]
    assert bool(lines) is logged
    assert node.index.counts()["instances"] == 2
