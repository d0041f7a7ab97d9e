"""Group commit of index rows: rows submitted while a commit is in flight share the next one;
every caller returns only once its own row is committed; a bad row fails only its caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from dicom_node.index.group import GroupCommitter


class Recorder:
    """A `write` that takes `delay` seconds per batch and remembers what it committed."""

    def __init__(self, delay: float = 0.0, bad: frozenset[int] = frozenset()) -> None:
        self.delay = delay
        self.bad = bad
        self.batches: list[list[int]] = []
        self.committed: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[int]:
        time.sleep(self.delay)
        if self.bad.intersection(items):
            raise ValueError("bad row")
        with self.lock:
            self.batches.append(list(items))
            self.committed.update(items)
        return [item * 10 for item in items]


def _submit_all(committer: GroupCommitter[int, int], recorder: Recorder,
                items: list[int]) -> dict[int, object]:
    outcomes: dict[int, object] = {}
    start = threading.Barrier(len(items))

    def one(item: int) -> None:
        start.wait()
        try:
            result = committer.submit(item)
        except ValueError as exc:
            outcomes[item] = exc
            return
        # The caller's row must already be committed when submit returns.
        outcomes[item] = result if item in recorder.committed else "returned before commit"

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_one_caller_is_its_own_batch():
    recorder = Recorder()
    committer = GroupCommitter(recorder)
    assert [committer.submit(i) for i in range(3)] == [0, 10, 20]
    assert recorder.batches == [[0], [1], [2]]


def test_rows_arriving_during_a_commit_share_the_next_one():
    recorder = Recorder(delay=0.05)
    committer = GroupCommitter(recorder)
    outcomes = _submit_all(committer, recorder, list(range(12)))
    assert outcomes == {i: i * 10 for i in range(12)}
    assert sorted(i for b in recorder.batches for i in b) == list(range(12))
    assert len(recorder.batches) < 12
    assert max(len(b) for b in recorder.batches) > 1


def test_a_bad_row_fails_only_its_own_caller():
    recorder = Recorder(delay=0.02, bad=frozenset({5}))
    committer = GroupCommitter(recorder)
    outcomes = _submit_all(committer, recorder, list(range(10)))
    assert isinstance(outcomes.pop(5), ValueError)
    assert outcomes == {i: i * 10 for i in range(10) if i != 5}
    assert 5 not in recorder.committed
    with pytest.raises(ValueError):
        committer.submit(5)
    assert committer.submit(6) == 60
