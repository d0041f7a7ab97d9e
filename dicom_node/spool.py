"""The spool: where received instances live, bit-exact as they arrived.

A write goes to a temporary file under `.tmp/`, is fsynced (on a writer thread, while the receive
path validates the same bytes), renamed into `<study>/<series>/<sop>.dcm` and the directory is
fsynced, so after a crash a file either is complete at its final path or is not there (a leftover
temporary file is never indexed; a file at its final path is acknowledged-or-about-to-be, and
start-up recovery indexes it, `dicom_node.recovery`).

Refused instances are kept under `.rejected/` and conflicting duplicates under
`.rejected/conflicts/`, each `<id>.dcm` beside a `<id>.json` record (time, calling AE, SOP UIDs,
status, reason; no PHI), so the folder explains itself even when the database was unreachable.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dicom_node.errors import OutOfResources
from dicom_node.uids import checked_uid, is_valid_uid


@dataclass(frozen=True)
class Staged:
    """A temporary file being written and fsynced by the spool's writer threads."""

    tmp: Path
    written: Future[None]


WRITER_THREADS = 16
"""Temporary files written and fsynced at once; more concurrent stores wait for a thread."""


class Spool:
    """Durable instance storage under `root` with a free-space watermark."""

    def __init__(self, root: Path, min_free_bytes: int) -> None:
        # Threads start on first use; an fsync releases the GIL, so a write overlaps the
        # validation of the same instance in the receiving thread.
        self._writer = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="spool-write")
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self._tmp = self.root / ".tmp"
        self.rejected_dir = self.root / ".rejected"
        self.conflicts_dir = self.rejected_dir / "conflicts"

    def prepare(self) -> None:
        """Creates the folders and removes temporary files a crash left behind."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.conflicts_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)

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
        dot-folders (`.tmp/`, `.rejected/`) and any name that is not a UID are passed over."""
        for study in _subfolders(self.root):
            if is_valid_uid(study.name):
                for series in _subfolders(study):
                    if is_valid_uid(series.name):
                        yield study.name, series.name, series

    def check_space(self, incoming_bytes: int) -> None:
        """Raises OutOfResources when storing `incoming_bytes` would cross the watermark."""
        if self.free_bytes() - incoming_bytes < self.min_free_bytes:
            raise OutOfResources("spool below its free-space watermark")

    def stage(self, data: bytes) -> Staged:
        """Starts writing `data` to a temporary file and fsyncing it, on a writer thread, so that
        the caller can validate the data meanwhile; `place` or `discard` must follow.

        Raises OutOfResources when the watermark would be crossed.
        """
        self.check_space(len(data))
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        return Staged(tmp, self._writer.submit(_write_synced, tmp, data))

    def place(self, staged: Staged, final: Path, *, replace: bool = True) -> bool:
        """Waits until `staged` is fsynced, renames it to `final` and fsyncs the directory (and
        the new directories' parents), so that `final` survives a crash once this returns.

        With `replace` False an existing file at `final` is left as it is and False is returned
        (`staged` stays, for another `place` or `discard`): the caller learns of a repeated
        instance without asking the index. Raises OutOfResources when the write fails.
        """
        try:
            staged.written.result()
            new_dirs = not final.parent.exists()
            final.parent.mkdir(parents=True, exist_ok=True)
            if replace:
                os.replace(staged.tmp, final)
            elif not _rename_new(staged.tmp, final):
                return False
            fsync_dir(final.parent)
            if new_dirs:
                # New directory entries must survive a crash too.
                fsync_dir(final.parent.parent)
                fsync_dir(self.root)
        except OSError as exc:
            staged.tmp.unlink(missing_ok=True)
            reason = exc.strerror or type(exc).__name__
            raise OutOfResources(f"spool write failed: {reason}") from exc
        return True

    @staticmethod
    def discard(staged: Staged) -> None:
        """Removes the temporary file of `staged` unless it was placed (waits for its writer)."""
        try:
            staged.written.result()
        except OSError:
            pass
        staged.tmp.unlink(missing_ok=True)

    def write(self, data: bytes, final: Path, *, replace: bool = True) -> bool:
        """Writes `data` durably at `final`: `stage` then `place` (temp file, fsync, rename,
        directory fsync); False, with nothing written, when `replace` is False and `final`
        exists. Raises OutOfResources when the watermark would be crossed or the write fails.
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

    def keep_rejected(self, data: bytes, record: Mapping[str, object] | None = None, *,
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


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
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
    source.unlink()
    return True


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (renames, unlinks) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
