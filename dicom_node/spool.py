"""The spool: where received instances live, bit-exact as they arrived.

One flush per new instance before it is acknowledged (docs/DICOM.md, Durability). The spool keeps
a pool of empty files under `.slots/` whose directory entries were made durable beforehand (made
in batches, one fsync of `.slots/` per batch, by a background thread). `stage` takes a slot and,
on a writer thread while the receive path validates the same bytes, writes the bytes, marks the
file with their length and CRC-32 (an extended attribute of the same inode) and fsyncs it: that
one flush makes data, size and mark durable, and the slot's name was durable already. `place`
renames the slot to `<study>/<series>/<sop>.dcm` without fsyncing the directory: after a power
loss the file is complete at its slot name or at its final name (a rename is one atomic step), and
start-up recovery (`dicom_node.recovery`) moves a complete slot (its mark matches its bytes) to
the final name its own header gives. The renamed-into directories are fsynced later, in batches,
only to keep that recovery short. A new study or series folder is made durable (mkdir, fsync of
its parent) before the first rename into it. Where the file system keeps no extended attributes,
`place` fsyncs the directory before it returns (two flushes, as without slots), and a slot
without a mark is never taken for a complete instance.

Refused instances are kept under `.rejected/` and conflicting duplicates under
`.rejected/conflicts/`, each `<id>.dcm` beside a `<id>.json` record (time, calling AE, SOP UIDs,
status, reason; no PHI), so the folder explains itself even when the database was unreachable.
`.tmp/` holds STOW-RS request bodies while they are read; it is emptied at start-up.

Each process that receives has its own slot folder (`slot_folder`): the node's own process
`.slots/`, an extra acceptor process k (`dicom.acceptor_processes`) `.slots/<k>/`, so that no two
processes take the same empty slot into their pools. `abandoned_slots` of the `.slots/` spool
lists the subfolders' slots too: start-up recovery runs in the node's process before any
acceptor process starts, when every slot there is abandoned.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import mmap
import os
import shutil
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dicom_node.buffers import Received, Writable
from dicom_node.errors import OutOfResources
from dicom_node.uids import checked_uid, is_valid_uid


@dataclass(frozen=True)
class Staged:
    """A slot being written and fsynced by the spool's writer threads; the future tells whether
    the slot carries its completeness mark."""

    slot: Path
    written: Future[bool]


WRITER_THREADS = 16
"""Slots written and fsynced at once; more concurrent stores wait for a thread."""

SLOT_POOL = 64
"""Empty durable slots the background thread keeps ready (one `.slots/` fsync per batch)."""

FLUSH_INTERVAL_S = 0.1
"""How often the background thread fsyncs the directories that renames touched (this bounds
recovery's work after a power loss; correctness never waits for it)."""

IDLE_EXIT_S = 5.0
"""The background thread ends after this long without work (a failed refill is none) and
starts again when needed."""

SLOT_MARK = "user.infernode.slot"
"""Extended attribute of a written slot: `<length>:<crc32 hex>` of its bytes."""

SLOT_SUFFIX = ".slot"
_DURABLE_DIRS_MAX = 65536


class Spool:
    """Durable instance storage under `root` with a free-space watermark."""

    def __init__(self, root: Path, min_free_bytes: int, *,
                 slot_folder: str = ".slots", drop_cache: bool = True) -> None:
        """`slot_folder`: this process's slot folder, relative to `root` (`.slots` or, for
        an extra acceptor process k, `.slots/<k>`). `drop_cache`: an instance's pages leave
        the page cache once they are on disk and read (`dicom.spool_drop_cache`)."""
        # Threads start on first use; an fsync releases the GIL, so a write overlaps the
        # validation of the same instance in the receiving thread.
        self._writer = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="spool-write")
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self._tmp = self.root / ".tmp"
        self.slots_dir = self.root / slot_folder
        self.rejected_dir = self.root / ".rejected"
        self.conflicts_dir = self.rejected_dir / "conflicts"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._background: threading.Thread | None = None
        self._free: deque[Path] = deque()  # empty slots whose directory entry is durable
        self._busy: set[Path] = set()  # slots handed to a store, not yet placed or discarded
        self._dirty: set[Path] = set()  # directories with renames or unlinks not yet fsynced
        self._durable: set[Path] = set()  # series/study folders known durable in this process
        self._dir_lock = threading.Lock()
        # Held while slots are made but not yet pooled, so that `prepare` never pools them too.
        self._refill_lock = threading.Lock()
        self._marks = True  # False once the file system refused an extended attribute
        self._closed = False
        self.drop_cache = drop_cache

    def prepare(self) -> None:
        """Creates the folders, removes STOW-RS bodies a crash left in `.tmp/`, takes the empty
        slots into the pool (after one fsync of `.slots/`: a previous process may have died
        before its own) and fills it. Non-empty slots are left for `recovery`."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.conflicts_dir.mkdir(parents=True, exist_ok=True)
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)
        with self._refill_lock:
            empty = []
            with os.scandir(self.slots_dir) as entries:
                for entry in entries:
                    if (entry.name.endswith(SLOT_SUFFIX)
                            and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_size == 0):
                        empty.append(Path(entry.path))
            fsync_dir(self.slots_dir)
            for parent in self.slots_dir.parents:  # `.slots/` too for `.slots/<k>/`
                fsync_dir(parent)
                if parent == self.root:
                    break
            with self._lock:
                known = set(self._free) | self._busy
                self._free.extend(p for p in sorted(empty) if p not in known)
        self._refill()

    def close(self) -> None:
        """At the node's stop, once nothing receives any more: waits for the writes in flight,
        ends the writer threads and the background thread, and fsyncs the directories that
        renames touched (a clean stop leaves no lazy flush behind). A later `stage` raises."""
        self._closed = True
        self._writer.shutdown(wait=True)
        self._wake.set()
        with self._lock:
            background = self._background
        if background is not None:
            background.join(timeout=5.0)
        self.flush_dirty()

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """The final path of an instance; each part is checked to be a UID (no traversal)."""
        return (
            self.root
            / checked_uid(study_uid, "StudyInstanceUID")
            / checked_uid(series_uid, "SeriesInstanceUID")
            / f"{checked_uid(sop_uid, 'SOPInstanceUID')}.dcm"
        )

    def series_folders(self) -> Iterator[tuple[str, str, Path]]:
        """(study UID, series UID, folder) of every series folder in the spool proper; the
        dot-folders (`.tmp/`, `.slots/`, `.rejected/`) and any name that is not a UID are passed
        over."""
        for study in _subfolders(self.root):
            if is_valid_uid(study.name):
                for series in _subfolders(study):
                    if is_valid_uid(series.name):
                        yield study.name, series.name, series

    def check_space(self, incoming_bytes: int) -> None:
        """Raises OutOfResources when storing `incoming_bytes` would cross the watermark."""
        if self.free_bytes() - incoming_bytes < self.min_free_bytes:
            raise OutOfResources("spool below its free-space watermark")

    def stage(self, data: Received) -> Staged:
        """Starts writing `data` to a slot, marking and fsyncing it, on a writer thread, so that
        the caller can validate the data meanwhile; `place` or `discard` must follow.

        With the pool empty the store makes its own slot and fsyncs `.slots/` too (the pool
        saves time, correctness never depends on it). Raises OutOfResources when the watermark
        would be crossed.
        """
        self._check_open()
        self.check_space(len(data))
        slot, created = self._take_slot()
        return Staged(slot, self._writer.submit(self._fill, slot, data, created))

    def open_slot(self) -> SlotWriter:
        """A slot to write an instance into piece by piece as it arrives (the node's own upper
        layer streams a C-STORE's data set fragments here: a data set is never held whole in
        memory). `SlotWriter.finish` then marks and fsyncs it on a writer thread and gives the
        `Staged` that `stage` gives, for `place` or `discard`; `SlotWriter.close` removes a slot
        never finished. Never raises: a slot that cannot be taken or written (the spool closed,
        the watermark crossed, a full disk) keeps its error for `finish` and `mapped`, so that
        the caller still reads the rest of the message and answers it."""
        try:
            self._check_open()
            self.check_space(0)
        except OutOfResources as refused:
            return SlotWriter(self, None, False, refused)
        slot, created = self._take_slot()
        return SlotWriter(self, slot, created)

    def _check_open(self) -> None:
        if self._closed:
            raise OutOfResources("spool closed: the node is stopping")

    def _take_slot(self) -> tuple[Path, bool]:
        """An empty slot from the pool, marked busy, or (pool empty) a new name the store
        creates itself; whether it is new."""
        with self._lock:
            slot = self._free.popleft() if self._free else None
            created = slot is None
            if slot is None:
                slot = self._new_slot_name()
            self._busy.add(slot)
            low = len(self._free) < SLOT_POOL // 2
        if low:
            self._kick()
        return slot, created

    def place(self, staged: Staged, final: Path, *, replace: bool = True) -> bool:
        """Waits until `staged` is written and fsynced and renames it to `final`; once this
        returns, `final` survives kill -9 and power loss (at its slot name or at `final`, where
        recovery finds it). A new study or series folder is made durable before the rename.

        With `replace` False an existing file at `final` is left as it is and False is returned
        (`staged` stays, for another `place` or `discard`): the caller learns of a repeated
        instance without asking the index. With `replace` True (an unindexed leftover is
        overwritten) the directory is fsynced before this returns, so that old and new content
        are never both found after a power loss. Raises OutOfResources when the write fails.
        """
        renamed = False
        try:
            marked = staged.written.result()
            if not self._rename(staged.slot, final, replace=replace):
                return False
            renamed = True
            if replace or not marked:
                fsync_dir(final.parent)
                self._mark_dirty(self.slots_dir)
            else:
                self._mark_dirty(final.parent, self.slots_dir)
        except OSError as exc:
            # A refused store leaves nothing that recovery would index: neither the slot nor,
            # when the rename happened before the failure, the file at its final name.
            _remove_quietly(final if renamed else staged.slot)
            self._release(staged.slot)
            raise _write_failed(exc) from exc
        self._release(staged.slot)
        return True

    def discard(self, staged: Staged, *, durable: bool = False) -> None:
        """Removes the slot of `staged` unless it was placed (waits for its writer). With
        `durable` (a refused instance) the removal is fsynced, so that recovery never finds the
        refused bytes after a power loss; a repeat's slot (the same instance, found in place)
        is removed lazily."""
        with self._lock:
            held = staged.slot in self._busy
        if not held:
            return  # placed, or discarded or removed by a failed `place` already
        try:
            staged.written.result()
        except OSError:
            pass
        try:
            staged.slot.unlink()
        except FileNotFoundError:
            pass  # placed, or discarded already
        except OSError:
            pass  # recovery finds it, unmarked or a repeat, and sets it aside
        else:
            if durable:
                try:
                    fsync_dir(self.slots_dir)
                except OSError:
                    pass
            else:
                self._mark_dirty(self.slots_dir)
        self._release(staged.slot)

    def write(self, data: bytes, final: Path, *, replace: bool = True) -> bool:
        """Writes `data` durably at `final`: `stage` then `place` (one flush with `replace`
        False and the pool non-empty); False, with nothing written, when `replace` is False and
        `final` exists. Raises OutOfResources when the watermark would be crossed or the write
        fails.
        """
        staged = self.stage(data)
        placed = False
        try:
            placed = self.place(staged, final, replace=replace)
        finally:
            if not placed:
                self.discard(staged)
        return placed

    def remove(self, stored: Path) -> None:
        """Removes a file written by `write` that must not stay (its index row went elsewhere)."""
        try:
            stored.unlink(missing_ok=True)
            fsync_dir(stored.parent)
        except OSError:
            pass  # an unindexed leftover is harmless: a later write of the instance replaces it

    # Slots, for start-up recovery.

    def abandoned_slots(self) -> list[Path]:
        """Non-empty slots no store of this process holds: left by a process that died (a
        store cut before its acknowledgement, or an acknowledged one whose rename a power loss
        took), in this process's slot folder and its subfolders (the slot folders of extra
        acceptor processes, `.slots/<k>/`: only call this before any of them starts, as
        start-up recovery does). Oldest name first."""
        found: list[Path] = []
        folders = [self.slots_dir]
        while folders:
            try:
                with os.scandir(folders.pop()) as entries:
                    for entry in entries:
                        path = Path(entry.path)
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(path)
                            continue
                        if (not entry.name.endswith(SLOT_SUFFIX)
                                or not entry.is_file(follow_symlinks=False)):
                            continue
                        if entry.stat(follow_symlinks=False).st_size > 0:
                            found.append(path)
            except FileNotFoundError:
                continue
        with self._lock:  # after the listing: a slot written meanwhile was handed out before
            held = set(self._free) | self._busy
        return sorted((p for p in found if p not in held), key=lambda p: (p.name, str(p)))

    @staticmethod
    def slot_is_complete(slot: Path, raw: Received) -> bool:
        """Whether `raw`, read from `slot`, is what its writer marked (length and CRC-32): a
        slot without its mark, or whose bytes differ from it, was cut before its fsync ended."""
        try:
            mark = os.getxattr(slot, SLOT_MARK).decode("ascii")
        except (OSError, UnicodeDecodeError):
            return False
        return mark == _mark(raw)

    def adopt_slot(self, slot: Path, final: Path) -> bool:
        """Renames a complete abandoned slot to `final` durably (its folders too); False, with
        the slot untouched, when `final` exists."""
        if not self._rename(slot, final, replace=False):
            return False
        fsync_dir(final.parent)
        fsync_dir(slot.parent)
        return True

    def drop_slot(self, slot: Path) -> None:
        """Removes an abandoned slot whose instance is at its final name already."""
        slot.unlink(missing_ok=True)
        fsync_dir(slot.parent)

    # Internals of the slot protocol.

    def _new_slot_name(self) -> Path:
        return self.slots_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex}{SLOT_SUFFIX}"

    def _fill(self, slot: Path, data: Received, created: bool) -> bool:
        """On a writer thread: writes, marks and fsyncs a slot (and `.slots/` when this store
        made the slot itself). Returns whether the mark was set."""
        fd = _open_slot(slot, created, os.O_WRONLY)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        return self._seal(fd, _mark(data), created, drop=self.drop_cache)

    def _seal(self, fd: int, mark: str, created: bool, *, drop: bool = False) -> bool:
        """On a writer thread: marks a written slot with `mark`, fsyncs and closes it (and
        fsyncs `.slots/` when the store made the slot itself). Whether the mark was set.
        `drop`: its pages then leave the page cache (nothing reads them from there)."""
        try:
            marked = self._set_mark(fd, mark)
            os.fsync(fd)
            if drop:
                drop_cached(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.slots_dir)
        return marked

    def _set_mark(self, fd: int, mark: str) -> bool:
        if not self._marks:
            return False
        try:
            os.setxattr(fd, SLOT_MARK, mark.encode("ascii"))
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                self._marks = False  # this file system: the directory fsync in `place` instead
                return False
            raise
        return True

    def _rename(self, source: Path, final: Path, *, replace: bool) -> bool:
        """Renames into a durable folder; a folder removed meanwhile (retention removes a
        study's empty folders, its study folder too) is made again."""
        for attempt in (1, 2):
            try:
                self._durable_folder(final.parent, known=attempt == 1)
                if replace:
                    os.replace(source, final)
                    return True
                return _rename_new(source, final)
            except FileNotFoundError:
                if attempt == 2 or not source.exists():
                    raise
        raise AssertionError("unreachable")

    def _durable_folder(self, series: Path, *, known: bool) -> None:
        """Makes `series` (and its study folder) exist with durable directory entries before a
        rename into it: mkdir and an fsync of the parent, once per folder and process."""
        if known and series in self._durable:
            return
        with self._dir_lock:
            if len(self._durable) > _DURABLE_DIRS_MAX:
                self._durable.clear()
            if not known:
                self._durable.discard(series)
                self._durable.discard(series.parent)
            for folder in (series.parent, series):
                if folder not in self._durable:
                    folder.mkdir(exist_ok=True)
                    fsync_dir(folder.parent)
                    self._durable.add(folder)

    def _release(self, slot: Path) -> None:
        with self._lock:
            self._busy.discard(slot)

    def _mark_dirty(self, *folders: Path) -> None:
        with self._lock:
            self._dirty.update(folders)
        self._kick(wake=False)  # flushed at the next interval, with the others

    def _kick(self, *, wake: bool = True) -> None:
        """Starts the background thread when it is not running; with `wake`, it refills the
        pool now instead of at its next interval. Nothing once the spool is closed."""
        if self._closed:
            return
        with self._lock:
            if self._background is None:
                self._background = threading.Thread(target=self._run_background,
                                                    name="spool-background", daemon=True)
                self._background.start()
        if wake:
            self._wake.set()

    def _run_background(self) -> None:
        idle_since = last_flush = time.monotonic()
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            if self._closed:
                with self._lock:
                    self._background = None
                return
            worked = self._refill()
            now = time.monotonic()
            if now - last_flush >= FLUSH_INTERVAL_S:
                worked = self.flush_dirty() or worked
                last_flush = now
            if worked:
                idle_since = now
            elif now - idle_since > IDLE_EXIT_S:
                # Idle, or a refill that keeps failing (a full or read-only disk): the next
                # store that finds the pool low starts the thread again (`stage`).
                with self._lock:
                    if not self._dirty:
                        self._background = None
                        return

    def flush_dirty(self) -> bool:
        """Fsyncs the directories that renames and removals touched since the last call (the
        background thread does this every FLUSH_INTERVAL_S); whether there were any."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for folder in sorted(dirty):
            try:
                fsync_dir(folder)
            except OSError:
                pass  # removed meanwhile (retention), or a failing disk the next store reports
        return bool(dirty)

    def _refill(self) -> bool:
        """Creates empty slots up to SLOT_POOL, then one fsync of `.slots/` makes their entries
        durable before any is handed out. Whether it made any."""
        with self._refill_lock:
            with self._lock:
                wanted = SLOT_POOL - len(self._free)
            if wanted <= 0:
                return False
            made = []
            try:
                for _ in range(wanted):
                    slot = self._new_slot_name()
                    os.close(os.open(slot, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
                    made.append(slot)
                fsync_dir(self.slots_dir)
            except OSError:
                for slot in made:  # not known durable: never handed out
                    slot.unlink(missing_ok=True)
                return False
            with self._lock:
                self._free.extend(made)
            return True

    def keep_rejected(self, data: Received, record: Mapping[str, object] | None = None, *,
                      conflict: bool = False) -> Path | None:
        """Keeps the bytes of a refused (or, with `conflict`, set-aside) instance and its
        record; None when that fails too (it must not hide the refusal itself)."""
        folder = self.conflicts_dir if conflict else self.rejected_dir
        target = folder / f"{uuid.uuid4().hex}.dcm"
        try:
            if self.free_bytes() - len(data) < self.min_free_bytes:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            _write_synced(target, data)
            self._write_record(target, record)
        except OSError:
            target.unlink(missing_ok=True)
            return None
        return target

    def move_to_rejected(self, stored: Path, record: Mapping[str, object]) -> Path | None:
        """Moves a written but unindexed file out of the spool proper (no orphan stays)."""
        target = self.rejected_dir / f"{uuid.uuid4().hex}.dcm"
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            # The lazy rename that brought the file here from its slot is made durable first:
            # on a file system that does not keep metadata operations in order, a power loss
            # could otherwise keep this move and lose that rename, and the complete slot would
            # come back for recovery to index (a refused instance).
            self.flush_dirty()
            os.replace(stored, target)
            fsync_dir(self.rejected_dir)
            self._write_record(target, record)
        except OSError:
            return None
        return target

    def kept_records(self, *, conflicts: bool = False) -> list[dict[str, object]]:
        """The records beside kept files, oldest first, each with its `path` (for operators)."""
        folder = self.conflicts_dir if conflicts else self.rejected_dir
        found = []
        for sidecar in folder.glob("*.json"):
            try:
                record = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            record["path"] = str(sidecar.with_suffix(".dcm"))
            found.append(record)
        return sorted(found, key=lambda r: str(r.get("at", "")))

    @staticmethod
    def _write_record(target: Path, record: Mapping[str, object] | None) -> None:
        if record is not None:
            text = json.dumps(dict(record), default=str, sort_keys=True)
            _write_synced(target.with_suffix(".json"), text.encode())


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def _remove_quietly(path: Path) -> None:
    """Removes `path` durably where the disk still allows it (a failing disk: recovery sets
    what stays aside)."""
    try:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError:
        pass


def _write_failed(exc: OSError) -> OutOfResources:
    """The refusal for a spool write that failed (a full disk, an I/O error): its reason is
    the OS error's text, never a path."""
    return OutOfResources(f"spool write failed: {exc.strerror or type(exc).__name__}")


def _mark(data: Received) -> str:
    return _mark_of(len(data), zlib.crc32(data))


def _mark_of(length: int, crc32: int) -> str:
    return f"{length}:{crc32:08x}"


def _open_slot(slot: Path, created: bool, access: int) -> int:
    flags = access | (os.O_CREAT | os.O_EXCL if created else os.O_TRUNC)
    return os.open(slot, flags, 0o640)


SPACE_CHECK_BYTES = 8 << 20
"""A streamed data set checks the free-space watermark again each time this much more was
written (a data set may be up to `max_dataset_bytes`)."""


def _truncate_quietly(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass


class SlotWriter:
    """One slot written piece by piece (`Spool.open_slot`): `write` as pieces arrive (the
    completeness mark's length and CRC-32 are summed as they go), `mapped` to read what was
    written without a copy in memory, `finish` to have it marked and fsynced, `close` at the
    end whatever happened (also after `finish`: it holds a descriptor of the slot until then).
    Used by one thread."""

    def __init__(self, spool: Spool, slot: Path | None, created: bool,
                 error: OutOfResources | None = None) -> None:
        self._spool = spool
        self.slot = slot
        self._created = created
        self._error: OutOfResources | OSError | None = error
        self._fd = -1
        self._length = 0
        self._crc = 0
        self._map: mmap.mmap | None = None
        self._staged: Staged | None = None
        self._closed = False
        self._next_space_check = SPACE_CHECK_BYTES  # open_slot checked at 0
        if slot is not None:
            try:
                self._fd = _open_slot(slot, created, os.O_RDWR)
            except OSError as exc:
                self._error = exc

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._length

    def write(self, data: Writable) -> None:
        """Appends `data`; after a failure, later pieces are counted and dropped (the error
        is raised by `finish`). The free-space watermark is checked again every
        SPACE_CHECK_BYTES written: below it, what was written is given back at once
        (truncated) and the rest dropped, as for a full disk. Raises RuntimeError after
        `finish` (the slot is sealed: its mark holds the length and CRC-32 written so far)."""
        if self._staged is not None:
            raise RuntimeError("a slot is written before `finish`, not after")
        if self._error is None:
            try:
                if self._length >= self._next_space_check:
                    self._next_space_check = self._length + SPACE_CHECK_BYTES
                    self._spool.check_space(len(data))
                _write_all(self._fd, data)
            except (OSError, OutOfResources) as exc:
                self._error = exc
                _truncate_quietly(self._fd)
            else:
                self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)

    def mapped(self) -> Received:
        """What was written, mapped read-only: pages come from the page cache as they are
        read (a header read touches the first few); empty bytes when nothing was written (an
        empty STOW-RS part: a file of no bytes cannot be mapped). Raises as `finish` does."""
        self._raise_error()
        if self._length == 0:
            return b""
        if self._map is None:
            if self._staged is not None or self._fd < 0:
                raise RuntimeError("a slot is mapped before `finish`, not after")
            self._map = mmap.mmap(self._fd, self._length, access=mmap.ACCESS_READ)
        return self._map

    def finish(self) -> Staged:
        """Hands the slot to a writer thread to be marked (length and CRC-32) and fsynced;
        the `Staged` for `Spool.place` or `Spool.discard`. Raises OutOfResources when the slot
        could not be taken or written, or the spool is now below its watermark."""
        if self._staged is None:
            self._raise_error()
            self._spool._check_open()
            self._spool.check_space(0)  # the bytes are on the disk already
            assert self.slot is not None
            # The writer thread seals and closes a descriptor of its own; this one stays open
            # for `close`, which drops the pages once the receive path has read them.
            try:
                sealing = os.dup(self._fd)
            except OSError as exc:
                raise _write_failed(exc) from exc
            try:
                sealed = self._spool._writer.submit(
                    self._spool._seal, sealing, _mark_of(self._length, self._crc),
                    self._created)
            except BaseException as exc:
                os.close(sealing)
                if isinstance(exc, RuntimeError):  # closed meanwhile; `close` removes the slot
                    raise OutOfResources("spool closed: the node is stopping") from exc
                raise
            self._staged = Staged(self.slot, sealed)
        return self._staged

    def close(self) -> None:
        """Unmaps; a slot never finished is closed and removed (an association cut mid data
        set, a refusal before the write was finished). The `Staged` of a finished one is its
        receive path's to place or discard; its pages leave the page cache here (with the
        spool's `drop_cache`: the writer thread's fsync has ended by now, or a refusal removes
        the slot anyway). Never raises."""
        if self._closed:
            return
        self._closed = True
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view of it is still alive: unmapped when that goes
            self._map = None
        if self._staged is not None:
            fd, self._fd = self._fd, -1
            if self._spool.drop_cache:
                drop_cached(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            return
        if self.slot is None:
            return
        try:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)
            self.slot.unlink(missing_ok=True)
            self._spool._mark_dirty(self._spool.slots_dir)
        except (OSError, RuntimeError):
            pass  # unmarked: recovery sets it aside; a failed flush start waits for the next
        finally:
            self._spool._release(self.slot)

    def _raise_error(self) -> None:
        error = self._error
        if isinstance(error, OutOfResources):
            raise error
        if error is not None:
            raise _write_failed(error) from error


def _write_all(fd: int, data: Writable) -> None:
    """Writes all of `data` to `fd` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_synced(path: Path, data: Writable) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    """Linux renameat2(2), which can refuse to replace; None where the C library lacks it."""
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    return function


_RENAMEAT2 = _renameat2()


def _rename_new(source: Path, target: Path) -> bool:
    """Renames `source` to `target` unless `target` exists (then False, `source` untouched).

    One renameat2(RENAME_NOREPLACE) call; where the kernel, file system or C library cannot,
    a hard link (which never replaces) and the removal of `source`.
    """
    if _RENAMEAT2 is not None:
        done = _RENAMEAT2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                          _RENAME_NOREPLACE)
        if done == 0:
            return True
        error = ctypes.get_errno()
        if error == errno.EEXIST:
            return False
        if error not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(error, os.strerror(error), str(target))
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    try:
        source.unlink()
    except OSError:
        target.unlink(missing_ok=True)  # not renamed after all: one name only
        raise
    return True


def drop_cached(fd: int) -> None:
    """Asks the kernel to drop the file's clean pages from the page cache (an instance is
    written once and read again only by its analysis, from disk): a spool that receives all day
    then reuses the same memory for its writes instead of growing the page cache over memory
    never written before, which costs a page fault each on a virtual machine whose host backs
    guest memory lazily (docs/BENCHMARKS.md round 7). Dirty or mapped pages stay. Never
    raises: only the cache is at stake."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (renames, unlinks) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
