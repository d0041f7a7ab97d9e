"""Group commit: index rows that arrive while a commit is in flight share the next one.

Every stored instance must be committed before its acknowledgement, and on SQLite every commit
is a WAL fsync taken under the database's single write lock. Concurrent associations would queue
on that lock (SQLite's busy handler sleeps in steps of milliseconds) and pay one fsync each. Here
the first caller to find no commit in flight becomes the leader: it takes every row waiting at
that moment, writes them in one transaction and commits once; callers that arrive meanwhile wait,
and the next of them leads the following batch. With one association nothing ever waits (each
row is its own batch, written by its own thread), so one association pays no hand-off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    """One caller's row and, once its batch is committed, its result or error."""

    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Runs `write(items)` (one transaction, one result per item, in order) for batches of the
    items submitted concurrently; `submit` returns only after the batch holding its item has
    committed, or raises what writing it raised.

    A failed batch of several items is written again one item at a time, so that one bad row
    fails only its own caller.
    """

    def __init__(self, write: Callable[[Sequence[T]], list[R]]) -> None:
        self._write = write
        self._waiting: list[_Slot[T, R]] = []
        self._leading = False
        self._changed = threading.Condition()

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._changed:
            self._waiting.append(slot)
            while not slot.done and self._leading:
                self._changed.wait()
            if slot.done:
                return self._outcome(slot)
            # No commit in flight and this row not yet written: lead the next batch, which
            # holds every row waiting now (at most one per association), this one included.
            self._leading = True
            batch, self._waiting = self._waiting, []
        try:
            self._run(batch)
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()
        return self._outcome(slot)

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._write([s.item for s in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to each caller of the batch
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for slot in batch:
                    self._run([slot])
                return
        else:
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        for slot in batch:
            slot.done = True

    @staticmethod
    def _outcome(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]
