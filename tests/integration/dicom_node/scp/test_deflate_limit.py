"""A deflated data set that inflates beyond the configured limit is refused with 0xC000 before it
is ever inflated whole; one within the limit is stored as before. DCMTK deflates on the wire."""

from __future__ import annotations

import mmap
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_node.ingest import InflatesBeyondLimit, check_inflated_size
from dicom_node.status import Status
from tests.integration.dicom_node.scp.test_damaged_input import DCMTK_COMMENT, DCMTK_STATUS
from tests.support.peers.dcmtk import ct_series, run


def _deflated_ct(folder: Path, size: int, noisy_rows: int = 0) -> Path:
    """A CT of `size` x `size` pixels (2 bytes each), deflated: zeros (a few KiB on the wire)
    but for `noisy_rows` rows of random values, which do not compress."""
    [src] = ct_series(folder / "src", slices=1, size=8)
    ds = pydicom.dcmread(src)
    ds.Rows = ds.Columns = size
    pixels = np.zeros((size, size), np.uint16)
    pixels[:noisy_rows] = np.random.default_rng(7).integers(0, 65536, (noisy_rows, size))
    ds.PixelData = pixels.tobytes()
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


def test_a_large_deflated_data_set_is_inflated_into_a_file_not_into_memory(tmp_path: Path,
                                                                              monkeypatch):
    """24.5 MiB of pixels (12 MiB of them noise, so the deflated stream itself is larger than
    what may be held) inflate into an unlinked file in the scratch folder, mapped: the Python
    heap holds at most INFLATE_IN_MEMORY_BYTES plus a few steps meanwhile (neither the
    inflated data set nor the deflated stream is copied whole), and the walked data set is the
    whole one (its pixel data found, its header parsed)."""
    from dicom_node.index import parse

    big = _deflated_ct(tmp_path, 3584, noisy_rows=1792).read_bytes()  # 3584 x 3584 x 2 bytes
    assert len(big) > parse.INFLATE_IN_MEMORY_BYTES + 4 * parse.INFLATE_STEP
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    folders: list[object] = []
    temporary = tempfile.TemporaryFile

    def recorded(*args, **kwargs):
        folders.append(kwargs.get("dir"))
        return temporary(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recorded)
    parse.use_scratch_folder(scratch)
    try:
        tracemalloc.start()
        try:
            walker, buf, start = parse._walk(big, DeflatedExplicitVRLittleEndian)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert folders == [scratch]
        assert isinstance(buf, mmap.mmap)
        assert len(buf) > 24 * 1024**2
        assert peak < parse.INFLATE_IN_MEMORY_BYTES + 4 * parse.INFLATE_STEP, peak
        assert walker.pixels is not None and walker.pixels.end - walker.pixels.start == 3584**2 * 2
        parsed = parse.parse_instance(big, DeflatedExplicitVRLittleEndian)
        assert parsed.dataset.Rows == 3584
    finally:
        parse.use_scratch_folder(None)


def test_a_small_deflated_data_set_stays_in_memory_and_a_cut_one_is_refused(tmp_path: Path):
    from dicom_node.errors import TruncatedDataSet
    from dicom_node.index import parse

    small = _deflated_ct(tmp_path, 256).read_bytes()
    _, buf, _ = parse._walk(small, DeflatedExplicitVRLittleEndian)
    assert isinstance(buf, bytes)
    with pytest.raises(TruncatedDataSet):
        parse.parse_instance(small[:-64], DeflatedExplicitVRLittleEndian)


def test_a_large_deflated_instance_is_stored_through_the_scp(node_factory, tmp_path: Path):
    node = node_factory()
    big = _deflated_ct(tmp_path / "big", 3072)  # 18 MiB inflated
    status, comment = send_deflated(node.server.port, big)
    assert status == Status.SUCCESS, comment
    with node.engine.connect() as conn:
        path = conn.exec_driver_sql("SELECT path FROM instances").scalar_one()
    assert pydicom.dcmread(path).Rows == 3072
