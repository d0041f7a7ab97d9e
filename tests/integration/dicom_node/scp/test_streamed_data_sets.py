"""The node's own upper layer streams a C-STORE's data set into a spool slot fragment by
fragment as it arrives (`Spool.open_slot`): a data set is never held whole in memory, a data set
cut off leaves no slot behind, and a disk that fills up mid data set is answered 0xA700 Out of
Resources after the rest of the message was read, the association still usable. Real DCMTK
storescu as the sender; the full disk is a real (small) tmpfs."""

from __future__ import annotations

import os
import re
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicom_node.status import Status
from tests.integration.dicom_node.scp.test_native_upper_layer import (
    RawPeer,
    _gauge,
    store_command,
)
from tests.support.page_cache import cached_pages, drops_pages
from tests.support.peers.dcmtk import ct_series, dataset_bytes, storescu
from tests.support.waiting import wait_until

DCMTK_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")
MiB = 1 << 20


def _written_slots(spool: Path) -> list[Path]:
    return [p for p in (spool / ".slots").rglob("*.slot") if p.stat().st_size > 0]


def _statuses(result: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(s, 16) for s in DCMTK_STATUS.findall(result.stdout + result.stderr)]


def test_a_large_data_set_is_never_held_whole_in_memory(node_factory, tmp_path):
    node = node_factory()
    [path] = ct_series(tmp_path / "big", slices=1, size=4096, seed=7)  # 32 MiB of pixels
    size = path.stat().st_size
    assert size > 32 * MiB
    tracemalloc.start()
    try:
        result = storescu(node.server.port, [path], extra=["-d"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    assert _statuses(result)[-1] == Status.SUCCESS
    [stored] = Path(node.settings.dicom.spool_dir).rglob(
        f"{pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID}.dcm")
    assert dataset_bytes(stored) == dataset_bytes(path)  # bit-exact
    # PDUs of at most max_pdu_bytes (256 KiB) are read and written on; the whole data set
    # (or a joined copy of it) would show as at least its size.
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB of Python allocations while receiving"


def test_a_data_set_cut_off_leaves_no_slot_behind(node_factory, tmp_path):
    node = node_factory()
    spool = Path(node.settings.dicom.spool_dir)
    [path] = ct_series(tmp_path / "ct", slices=1, size=256, seed=8)
    data = dataset_bytes(path)
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    for ending in ("abort", "close"):
        peer = RawPeer(node.server.port, [(1, CTImageStorage, ExplicitVRLittleEndian)])
        try:
            peer.send_pdv(1, store_command(1, CTImageStorage, uid), command=True, last=True)
            peer.send_pdv(1, data[:60000], command=False, last=False)
            peer.send_pdv(1, data[60000:90000], command=False, last=False)
            if ending == "abort":
                peer.abort()
        finally:
            peer.close()
        wait_until(lambda: _gauge(node, "infernode_active_associations") == 0, 30,
                   "the cut association to close")
        assert _written_slots(spool) == []
    assert storescu(node.server.port, [path]).returncode == 0  # the pool is still sound
    assert _written_slots(spool) == []
    assert len(list(spool.rglob(f"{uid}.dcm"))) == 1


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a real file system that runs out of space."""
    target = tmp_path / "tmpfs"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_disk_full_mid_data_set_is_out_of_resources_and_the_association_goes_on(
        node_factory, tmp_path, tiny_tmpfs):
    spool = tiny_tmpfs / "spool"
    node = node_factory(spool_dir=str(spool))
    [big] = ct_series(tmp_path / "big", slices=1, size=2560, seed=9)  # 12.5 MiB > 8 MiB
    small = ct_series(tmp_path / "small", slices=2, size=64, seed=10)
    result = storescu(node.server.port, [big, *small], extra=["-d", "--no-halt"])
    # one association for the three (storescu's exit status reports the failed store)
    assert (result.stdout + result.stderr).count("Association Accepted") == 1
    assert _statuses(result) == [Status.OUT_OF_RESOURCES, Status.SUCCESS, Status.SUCCESS]
    assert _written_slots(spool) == []
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar_one() == 2
    [listed] = node.index.failures()
    assert listed.record.status == Status.OUT_OF_RESOURCES
    assert listed.record.sop_instance_uid == str(
        pydicom.dcmread(big, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("upper_layer", ["native", "pynetdicom"])
@pytest.mark.parametrize("drop_cache", [True, False])
def test_stored_instances_leave_the_page_cache_unless_configured_to_stay(
        node_factory, tmp_path, upper_layer, drop_cache):
    if drop_cache and not drops_pages(tmp_path):
        pytest.skip("this file system keeps a file's pages (tmpfs): nothing is dropped")
    # A long quiet period: no analysis reads the series (into the cache) while it is looked at.
    node = node_factory(upper_layer=upper_layer, spool_drop_cache=drop_cache,
                        quiet_period_s=3600.0)
    paths = ct_series(tmp_path / "ct", slices=3, size=256, seed=9)
    result = storescu(node.server.port, paths, extra=["-d"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert _statuses(result) == [Status.SUCCESS] * 3
    stored = sorted(Path(node.settings.dicom.spool_dir).rglob("*.dcm"))
    assert len(stored) == 3
    for path in stored:
        cached, pages = cached_pages(path)
        assert pages > 30
        assert cached == (0 if drop_cache else pages), f"{cached} of {pages} pages cached"
