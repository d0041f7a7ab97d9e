"""A stored instance's pages leave the page cache once they are on disk and the receive path has
read them (`Spool(drop_cache=True)`, `dicom.spool_drop_cache`, the default); with the setting off
they stay cached. Read with mincore(2) (tests/support/page_cache.py) on the spool's own file
system (where that file system keeps every page, as tmpfs does, the dropping cases are skipped:
there is nothing to see)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dicom_node.config import DicomNodeConfig
from dicom_node.errors import OutOfResources
from dicom_node.spool import Spool
from tests.support.page_cache import cached_pages, drops_pages

MiB = 1 << 20


def _spool(tmp_path: Path, drop_cache: bool) -> Spool:
    if drop_cache and not drops_pages(tmp_path):
        pytest.skip("this file system keeps a file's pages (tmpfs): nothing is dropped")
    spool = Spool(tmp_path / "spool", 0, drop_cache=drop_cache)
    spool.prepare()
    return spool


@pytest.mark.parametrize("drop_cache", [True, False])
def test_a_streamed_slot_leaves_the_page_cache_when_closed(tmp_path: Path, drop_cache: bool):
    spool = _spool(tmp_path, drop_cache)
    data = os.urandom(2 * MiB + 123)
    writer = spool.open_slot()
    for start in range(0, len(data), 65536):
        writer.write(data[start:start + 65536])
    assert bytes(writer.mapped()[:132]) == data[:132]  # the header read, from the cache
    staged = writer.finish()
    final = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.place(staged, final, replace=False)
    cached, pages = cached_pages(final)
    assert cached == pages  # placed, not yet closed: the receive path may still read it
    writer.close()
    cached, pages = cached_pages(final)
    assert cached == (0 if drop_cache else pages)
    assert final.read_bytes() == data  # read back from the disk
    assert Spool.slot_is_complete(final, data)
    spool.close()


@pytest.mark.parametrize("drop_cache", [True, False])
def test_a_staged_instance_leaves_the_page_cache_after_its_flush(tmp_path: Path,
                                                                  drop_cache: bool):
    spool = _spool(tmp_path, drop_cache)
    data = os.urandom(MiB + 7)
    staged = spool.stage(data)  # pynetdicom's layer and STOW-RS: the bytes are in memory
    final = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.place(staged, final, replace=False)
    cached, pages = cached_pages(final)
    assert cached == (0 if drop_cache else pages)
    assert final.read_bytes() == data
    spool.close()


def test_the_spool_and_the_node_drop_by_default(tmp_path: Path):
    assert Spool(tmp_path / "spool", 0).drop_cache
    assert DicomNodeConfig().spool_drop_cache


def _descriptors_of(path: Path) -> int:
    """Open descriptors of this process on `path` (removed or not). Counted by target, not in
    all: the spool's background thread opens and closes files of its own meanwhile."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        count += target in (str(path), f"{path} (deleted)")
    return count


def test_a_slot_written_after_finish_is_refused(tmp_path: Path):
    spool = _spool(tmp_path, False)
    writer = spool.open_slot()
    writer.write(b"x" * 1000)
    staged = writer.finish()
    with pytest.raises(RuntimeError, match="before `finish`"):
        writer.write(b"more")
    final = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.3")
    assert spool.place(staged, final, replace=False)
    writer.close()
    assert final.read_bytes() == b"x" * 1000 and Spool.slot_is_complete(final, b"x" * 1000)
    spool.close()


def test_a_finish_refused_leaves_no_descriptor_and_no_slot(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    spool = Spool(tmp_path / "spool", 0, drop_cache=True)
    spool.prepare()

    def no_descriptor(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    writer = spool.open_slot()
    writer.write(b"y" * 5000)
    slot = writer.slot
    assert slot is not None and slot.exists()
    with monkeypatch.context() as patch:
        patch.setattr(os, "dup", no_descriptor)
        with pytest.raises(OutOfResources):
            writer.finish()
    assert _descriptors_of(slot) == 1  # the writer's own, until close
    writer.close()
    assert _descriptors_of(slot) == 0 and not slot.exists()

    def stopped(*args: object) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    writer = spool.open_slot()  # the writer threads stop between the check and the hand-over
    writer.write(b"z" * 5000)
    slot = writer.slot
    with monkeypatch.context() as patch:
        patch.setattr(spool._writer, "submit", stopped)
        with pytest.raises(OutOfResources, match="stopping"):
            writer.finish()
    assert slot is not None and _descriptors_of(slot) == 1  # the duplicate was closed
    writer.close()
    assert _descriptors_of(slot) == 0 and not slot.exists()
    spool.close()
