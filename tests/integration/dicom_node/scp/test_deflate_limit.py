"""A deflated data set that inflates beyond the configured limit is refused with 0xC000 before it
is ever inflated whole; one within the limit is stored as before. DCMTK deflates on the wire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.ingest import InflatesBeyondLimit, check_inflated_size
from dicom_node.status import Status
from tests.integration.dicom_node.scp.test_damaged_input import DCMTK_COMMENT, DCMTK_STATUS
from tests.support.peers.dcmtk import ct_series, run


def _deflated_ct(folder: Path, size: int) -> Path:
    """A CT of `size` x `size` zero pixels (2 bytes each), deflated: a few KiB on the wire."""
    [src] = ct_series(folder / "src", slices=1, size=8)
    ds = pydicom.dcmread(src)
    ds.Rows = ds.Columns = size
    ds.PixelData = np.zeros((size, size), np.uint16).tobytes()
    plain, deflated = folder / "plain.dcm", folder / "deflated.dcm"
    ds.save_as(plain, enforce_file_format=True)
    result = run(["dcmconv", "+td", str(plain), str(deflated)])
    assert result.returncode == 0, result.stderr
    return deflated


def test_a_deflate_bomb_is_refused_before_it_inflates(node_factory, tmp_path: Path):
    node = node_factory()
    node.ingestor.max_inflated_bytes = 4 * 1024**2
    bomb = _deflated_ct(tmp_path / "bomb", 2048)  # 8 MiB of pixels
    assert bomb.stat().st_size < 64 * 1024
    status, comment = send_deflated(node.server.port, bomb)
    assert status == Status.CANNOT_UNDERSTAND
    assert "inflates beyond" in comment
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 0
        reason = conn.exec_driver_sql("SELECT reason_code FROM ingest_failures").scalar_one()
    assert reason == "inflate_limit"
    small = _deflated_ct(tmp_path / "small", 512)  # 512 KiB: within the limit
    status, _ = send_deflated(node.server.port, small)
    assert status == Status.SUCCESS


def send_deflated(port: int, path: Path) -> tuple[int, str]:
    """storescu proposing Deflated Explicit VR Little Endian (-xd); the status and comment."""
    result = run(["storescu", "-d", "-xd", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                  "127.0.0.1", str(port), str(path)], timeout=60)
    output = result.stdout + result.stderr
    statuses = DCMTK_STATUS.findall(output)
    assert statuses, output[-2000:]
    comment = DCMTK_COMMENT.search(output)
    return int(statuses[-1], 16), comment.group(1).strip() if comment else ""


def test_the_size_check_keeps_nothing_and_stops_at_the_limit(tmp_path: Path):
    bomb = _deflated_ct(tmp_path, 1024).read_bytes()  # 2 MiB inflated
    check_inflated_size(bomb, 3 * 1024**2)
    with pytest.raises(InflatesBeyondLimit):
        check_inflated_size(bomb, 1024**2)
