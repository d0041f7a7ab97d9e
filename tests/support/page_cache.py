"""How much of a file the page cache holds, read with mincore(2) over a shared mapping of it (the
mapping itself reads nothing; mincore reports the file's cached pages)."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def cached_pages(path: Path) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages of `path`)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    if not size:
        return 0, 0
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            return sum(v & 1 for v in vector), pages
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)


def drops_pages(folder: Path) -> bool:
    """Whether the file system under `folder` drops a flushed file's pages on request
    (posix_fadvise DONTNEED; tmpfs, for one, keeps them: they are the file)."""
    probe = folder / ".page-cache-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\x01" * 65536)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    try:
        return cached_pages(probe)[0] == 0
    finally:
        probe.unlink()
