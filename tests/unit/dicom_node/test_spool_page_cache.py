"""A stored instance's pages leave the page cache once they are on disk and the receive path has
read them (`Spool(drop_cache=True)`, `dicom.spool_drop_cache`, the default); with the setting off
they stay cached. Read with mincore(2) (tests/support/page_cache.py) on the spool's own file
system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_node.spool import Spool
from tests.support.page_cache import cached_pages

MiB = 1 << 20


def _spool(tmp_path: Path, drop_cache: bool) -> Spool:
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


def test_the_spool_drops_by_default(tmp_path: Path):
    assert Spool(tmp_path / "spool", 0).drop_cache
