"""The spool's slot protocol (docs/DICOM.md, Durability): one flush on the path of a new instance
into a known folder (the slot's fsync; its name was made durable beforehand, in a batch), the
directory fsyncs it still needs are counted here, and the pool, the fallback without extended
attributes and the lazy directory flush are checked."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_node import spool as spool_module
from dicom_node.errors import OutOfResources
from dicom_node.spool import SLOT_POOL, Spool

MiB = 1 << 20


@dataclass(frozen=True)
class Flush:
    thread: str
    path: str
    is_dir: bool


class Flushes:
    """Every os.fsync, with the thread that called it and what it flushed."""

    def __init__(self) -> None:
        self.seen: list[Flush] = []
        self._lock = threading.Lock()

    def critical(self) -> list[Flush]:
        """The flushes a store waits for (the background thread's are not)."""
        with self._lock:
            return [f for f in self.seen if f.thread != "spool-background"]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flushes]:
    record = Flushes()
    real = os.fsync

    def counted(fd: int) -> None:
        flush = Flush(threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}"),
                      stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)
        with record._lock:
            record.seen.append(flush)

    monkeypatch.setattr(os, "fsync", counted)
    yield record


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool", 0)
    s.prepare()
    return s


def _slots(spool: Spool) -> list[Path]:
    return sorted(spool.slots_dir.iterdir())


def test_prepare_fills_the_pool_with_durable_empty_slots(spool: Spool):
    slots = _slots(spool)
    assert len(slots) == SLOT_POOL
    assert all(p.stat().st_size == 0 for p in slots)


def test_a_new_instance_in_a_known_series_costs_one_flush(spool: Spool, flushes: Flushes):
    first = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"first", first, replace=False)
    flushes.clear()
    second = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.write(b"second" * 1000, second, replace=False)
    [flush] = flushes.critical()
    assert not flush.is_dir and flush.thread.startswith("spool-write")
    assert second.read_bytes() == b"second" * 1000
    assert os.getxattr(second, spool_module.SLOT_MARK)  # the mark travels with the file


def test_new_folders_are_made_durable_before_the_first_rename(spool: Spool, flushes: Flushes):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"x", path, replace=False)
    dirs = sorted(f.path for f in flushes.critical() if f.is_dir)
    assert dirs == sorted([str(spool.root), str(spool.root / "1.2.3")])
    assert len(flushes.critical()) == 3  # the two parents and the file


def test_the_background_thread_flushes_renamed_into_folders(spool: Spool, flushes: Flushes):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"x", path, replace=False)
    deadline = time.monotonic() + 30
    wanted = {str(path.parent), str(spool.slots_dir)}
    while time.monotonic() < deadline:
        with flushes._lock:
            done = {f.path for f in flushes.seen if f.thread == "spool-background"}
        if wanted <= done:
            break
        time.sleep(0.05)
    assert wanted <= done


def test_with_the_pool_empty_a_store_makes_its_own_slot_durable(
        spool: Spool, flushes: Flushes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spool, "_refill", lambda: False)  # a refill that does not keep up
    spool.write(b"first", spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1"))
    spool._free.clear()
    flushes.clear()
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.write(b"second", path, replace=False)
    critical = flushes.critical()
    assert sorted((f.is_dir, f.path) for f in critical if f.is_dir) == [
        (True, str(spool.slots_dir))]
    assert len(critical) == 2  # the file, then `.slots/`
    assert path.read_bytes() == b"second"


def test_replacing_a_leftover_fsyncs_the_directory_at_once(spool: Spool, flushes: Flushes):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    spool.write(b"leftover", path)
    flushes.clear()
    assert spool.write(b"new", path)  # replace=True
    assert sorted(f.path for f in flushes.critical() if f.is_dir) == [str(path.parent)]
    assert path.read_bytes() == b"new"


def test_without_extended_attributes_place_fsyncs_the_directory(spool: Spool,
                                                                 flushes: Flushes):
    spool.write(b"first", spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1"))
    spool._marks = False  # what an ENOTSUP from setxattr leaves
    flushes.clear()
    staged = spool.stage(b"unmarked")
    assert staged.written.result() is False
    assert not Spool.slot_is_complete(staged.slot, b"unmarked")  # never taken for complete
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.place(staged, path, replace=False)
    assert sorted(f.path for f in flushes.critical() if f.is_dir) == [str(path.parent)]


def test_discard_removes_the_slot_durably_only_for_a_refusal(spool: Spool, flushes: Flushes):
    repeat = spool.stage(b"a repeat")
    repeat.written.result()
    flushes.clear()
    spool.discard(repeat)
    assert not repeat.slot.exists() and not any(f.is_dir for f in flushes.critical())
    refused = spool.stage(b"refused")
    refused.written.result()
    flushes.clear()
    spool.discard(refused, durable=True)
    assert not refused.slot.exists()
    assert [f.path for f in flushes.critical() if f.is_dir] == [str(spool.slots_dir)]
    spool.discard(refused, durable=True)  # again: nothing to do


def test_the_completeness_mark_catches_a_cut_slot(spool: Spool):
    staged = spool.stage(b"0123456789" * 100)
    staged.written.result()
    raw = staged.slot.read_bytes()
    assert Spool.slot_is_complete(staged.slot, raw)
    with staged.slot.open("r+b") as cut:
        cut.truncate(500)
    assert not Spool.slot_is_complete(staged.slot, staged.slot.read_bytes())
    staged.slot.write_bytes(b"9" + raw[1:])  # same length, other bytes
    assert not Spool.slot_is_complete(staged.slot, staged.slot.read_bytes())
    spool.discard(staged)


def test_slots_held_by_this_process_are_not_abandoned(spool: Spool, tmp_path: Path):
    held = spool.stage(b"in flight")
    held.written.result()
    other = Spool(spool.root, 0)  # another process's spool on the same folder
    left = other.stage(b"left behind")
    left.written.result()
    assert spool.abandoned_slots() == [left.slot]
    assert other.abandoned_slots() == [held.slot]  # each sees only the other's
    spool.discard(held)


def test_prepare_keeps_written_slots_and_pools_empty_ones(spool: Spool):
    left = spool.stage(b"an acknowledged instance whose rename was lost")
    left.written.result()
    (spool.root / ".tmp" / "stow-x.body").write_bytes(b"body")
    again = Spool(spool.root, 0)  # the next process
    again.prepare()
    assert left.slot.read_bytes().startswith(b"an acknowledged")
    assert again.abandoned_slots() == [left.slot]
    assert left.slot not in again._free and len(again._free) >= SLOT_POOL - 1
    assert not any((spool.root / ".tmp").iterdir())


def test_a_series_folder_removed_meanwhile_is_made_again(spool: Spool):
    first = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    spool.write(b"first", first, replace=False)
    first.unlink()
    first.parent.rmdir()  # what retention does to an emptied series folder
    second = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.write(b"second", second, replace=False)
    assert second.read_bytes() == b"second"


def _failing_fsync_dir(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """An fsync of `target` that fails (EIO) from now on; other directories flush as usual."""
    real = spool_module.fsync_dir

    def fsync_dir(path: Path) -> None:
        if Path(path) == target:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        real(path)

    monkeypatch.setattr(spool_module, "fsync_dir", fsync_dir)


@pytest.mark.parametrize("unmarked", [False, True])
def test_a_place_that_fails_after_its_rename_leaves_nothing_at_the_final_path(
        spool: Spool, monkeypatch: pytest.MonkeyPatch, unmarked: bool):
    # Refused (OutOfResources) means never indexed: the renamed file must not stay where the
    # next recovery would index it. Both places that flush the directory after the rename:
    # replace=True, and a slot without its completeness mark.
    leftover = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    spool.write(b"leftover", leftover)
    spool._marks = not unmarked
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2") if unmarked else leftover
    _failing_fsync_dir(monkeypatch, path.parent)
    staged = spool.stage(b"refused")
    with pytest.raises(OutOfResources):
        spool.place(staged, path, replace=not unmarked)
    spool.discard(staged, durable=True)
    assert not staged.slot.exists() and not path.exists()
    assert staged.slot not in spool._busy


def test_a_link_fallback_that_cannot_remove_the_slot_leaves_no_final_file(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spool_module, "_RENAMEAT2", None)  # the hard link fallback
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    staged = spool.stage(b"linked")
    staged.written.result()
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == staged.slot and not getattr(unlink, "failed", False):
            unlink.failed = True  # type: ignore[attr-defined]
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OutOfResources):
        spool.place(staged, path, replace=False)
    spool.discard(staged, durable=True)
    assert not path.exists() and not staged.slot.exists()


def test_enotsup_from_setxattr_falls_back_to_the_directory_fsync(
        spool: Spool, flushes: Flushes, monkeypatch: pytest.MonkeyPatch):
    spool.write(b"first", spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1"))

    def setxattr(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(os, "setxattr", setxattr)
    flushes.clear()
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.write(b"second", path, replace=False)
    assert path.read_bytes() == b"second" and spool._marks is False
    assert [f.path for f in flushes.critical() if f.is_dir] == [str(path.parent)]


def test_a_full_disk_at_setxattr_refuses_the_store_and_keeps_the_pool_sound(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    real = os.setxattr

    def setxattr(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "setxattr", setxattr)
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    with pytest.raises(OutOfResources):
        spool.write(b"too much", path, replace=False)
    assert not path.exists() and spool._marks is True and not spool._busy
    assert all(p.stat().st_size == 0 for p in _slots(spool))
    monkeypatch.setattr(os, "setxattr", real)
    assert spool.write(b"room again", path, replace=False)
    assert Spool.slot_is_complete(path, b"room again")


def test_a_full_disk_during_refill_hands_out_no_slot_it_did_not_flush(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    with spool._lock:
        spool._free.clear()
    before = set(_slots(spool))
    real_open = os.open
    opened = []

    def open_(path: object, flags: int, *args: object) -> int:
        if str(path).endswith(spool_module.SLOT_SUFFIX) and flags & os.O_CREAT:
            opened.append(path)
            if len(opened) > 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_)
    assert spool._refill() is False
    assert not spool._free and set(_slots(spool)) == before  # the three made were removed


def test_a_new_series_of_a_study_retention_removed_is_stored(spool: Spool):
    # Retention deletes a study's files and then its empty folders; an instance of a new series
    # of that study that arrives later is stored like any new one (docs/RETENTION), not refused
    # because this process once made the study folder durable.
    first = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"first", first, replace=False)
    first.unlink()
    first.parent.rmdir()
    first.parent.parent.rmdir()  # the study folder too
    later = spool.path_for("1.2.3", "1.2.3.5", "1.2.3.5.1")
    assert spool.write(b"later", later, replace=False)
    assert later.read_bytes() == b"later"


def test_the_background_thread_ends_when_the_refill_keeps_failing(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    # A `.slots/` the refill cannot write to (no inodes left, say) must not keep a thread
    # retrying every interval for ever: it ends when idle, and a later store starts it again.
    monkeypatch.setattr(spool_module, "IDLE_EXIT_S", 0.2)
    monkeypatch.setattr(spool, "_refill", lambda: False)
    with spool._lock:
        spool._free.clear()
    spool.write(b"x", spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1"), replace=False)
    deadline = time.monotonic() + 30
    while spool._background is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool._background is None


def test_prepare_during_a_background_refill_pools_no_slot_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The refill makes its slots, then flushes `.slots/`, then pools them; a `prepare` in
    # between took the same empty files into the pool as well: each would be handed out twice.
    spool = Spool(tmp_path / "spool", 0)
    spool.slots_dir.mkdir(parents=True)
    real = spool_module.fsync_dir
    preparing: list[threading.Thread] = []

    def fsync_dir(path: Path) -> None:
        if (threading.current_thread().name == "spool-background" and not preparing
                and Path(path) == spool.slots_dir):
            preparing.append(threading.Thread(target=spool.prepare))
            preparing[0].start()
            preparing[0].join(timeout=2)  # as far as it gets while the refill is in here
        real(path)

    monkeypatch.setattr(spool_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(spool_module, "IDLE_EXIT_S", 0.2)
    spool._kick()
    deadline = time.monotonic() + 30
    while (spool._background is not None or not preparing or preparing[0].is_alive()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # until both the refill and the prepare are over
    with spool._lock:
        pooled = list(spool._free)
    assert preparing and not preparing[0].is_alive() and spool._background is None
    assert len(pooled) == len(set(pooled)) == SLOT_POOL


def test_a_file_moved_to_rejected_has_its_lazy_rename_flushed_first(
        spool: Spool, flushes: Flushes, monkeypatch: pytest.MonkeyPatch):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"refused later", path, replace=False)
    flushes.clear()
    order: list[str] = []
    real_replace = os.replace

    def replace(source: object, target: object) -> None:
        with flushes._lock:
            order.extend(f.path for f in flushes.seen if f.is_dir)
        order.append("move")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    kept = spool.move_to_rejected(path, {"reason": "test"})
    assert kept is not None and kept.read_bytes() == b"refused later"
    # The slot's removal (its rename) and the series folder's new entry reach the disk before
    # the move that a power loss must not keep on its own.
    assert order.index(str(spool.slots_dir)) < order.index("move")
    assert order.index(str(path.parent)) < order.index("move")


def test_close_ends_its_threads_and_flushes_what_renames_touched(
        tmp_path: Path, flushes: Flushes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spool_module, "FLUSH_INTERVAL_S", 3600.0)  # only close() flushes
    before = {t for t in threading.enumerate() if t.name.startswith("spool")}
    spool = Spool(tmp_path / "spool", 0)
    spool.prepare()
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"x" * 4096, path, replace=False)
    ours = {t for t in threading.enumerate() if t.name.startswith("spool")} - before
    assert any(t.name.startswith("spool-write") for t in ours)
    assert str(path.parent) not in {f.path for f in flushes.seen}
    spool.close()
    assert [t.name for t in ours if t.is_alive()] == []
    assert str(path.parent) in {f.path for f in flushes.seen if f.is_dir}
    with pytest.raises(OutOfResources):
        spool.stage(b"late")


def test_a_streamed_slot_is_placed_with_one_flush_and_its_mark(spool: Spool, flushes: Flushes):
    first = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.1")
    assert spool.write(b"first", first, replace=False)  # the folders exist and are durable
    flushes.clear()
    writer = spool.open_slot()
    pieces = [b"head", b"x" * 70000, memoryview(b"tail")]
    for piece in pieces:
        writer.write(piece)
    data = b"".join(bytes(p) for p in pieces)
    assert writer.size == len(data) and bytes(writer.mapped()[:]) == data
    staged = writer.finish()
    final = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.2")
    assert spool.place(staged, final, replace=False)
    writer.close()
    [flush] = flushes.critical()
    assert not flush.is_dir and flush.thread.startswith("spool-write")
    assert final.read_bytes() == data
    assert Spool.slot_is_complete(final, data)


def test_a_streamed_slot_never_finished_is_removed_at_close(spool: Spool):
    writer = spool.open_slot()
    writer.write(b"cut off" * 1000)
    assert writer.slot is not None and writer.slot.stat().st_size > 0
    writer.close()
    assert not writer.slot.exists()
    assert spool.abandoned_slots() == []


def test_a_failed_streamed_write_is_out_of_resources_at_finish(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    writer = spool.open_slot()
    writer.write(b"head")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    writer.write(b"more")
    writer.write(b"and more")  # counted, dropped
    monkeypatch.undo()
    assert writer.size == len(b"headmoreand more")
    with pytest.raises(OutOfResources, match="No space left"):
        writer.finish()
    writer.close()
    assert writer.slot is not None and not writer.slot.exists()


def test_a_streamed_slot_finished_after_the_spool_closed_is_refused_and_removed(
        tmp_path: Path):
    spool = Spool(tmp_path / "spool", 0)
    spool.prepare()
    writer = spool.open_slot()
    writer.write(b"late" * 100)
    spool.close()
    with pytest.raises(OutOfResources, match="closed"):
        writer.finish()
    writer.close()
    assert writer.slot is not None and not writer.slot.exists()
    with pytest.raises(OutOfResources, match="closed"):
        spool.open_slot().finish()


def test_a_streamed_slot_below_the_watermark_gives_its_bytes_back_and_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spool = Spool(tmp_path / "spool", min_free_bytes=100 * MiB)
    spool.prepare()
    free = [200 * MiB]
    monkeypatch.setattr(spool, "free_bytes", lambda: free[0])
    writer = spool.open_slot()
    piece = b"\x01" * MiB
    for _ in range(8):  # the first check after open comes at 8 MiB
        writer.write(piece)
    assert writer.slot is not None and writer.slot.stat().st_size == 8 * MiB
    free[0] = 100 * MiB  # another writer took the margin meanwhile
    for _ in range(56):
        writer.write(piece)
    assert writer.slot.stat().st_size == 0  # given back at once, the rest dropped
    assert writer.size == 64 * MiB
    with pytest.raises(OutOfResources, match="watermark"):
        writer.finish()
    writer.close()
    assert not writer.slot.exists()
    spool.close()


def test_a_finished_slot_is_not_mapped_again(spool: Spool):
    writer = spool.open_slot()
    writer.write(b"bytes")
    staged = writer.finish()
    with pytest.raises(RuntimeError, match="before `finish`"):
        writer.mapped()
    spool.discard(staged)
    writer.close()


def test_nothing_restarts_the_background_thread_after_close(tmp_path: Path):
    spool = Spool(tmp_path / "spool", 0)
    spool.prepare()
    writer = spool.open_slot()
    writer.write(b"cut off")
    spool.close()
    writer.close()  # marks .slots/ dirty: would start the thread again
    assert spool._background is None
