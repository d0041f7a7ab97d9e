"""`infernode serve` freezes what start-up built (`freeze_start_up_heap`) before the listener
accepts: the embedded runner's preloaded highdicom tables (about 300 000 objects) are out of
the cyclic collector's full collections while associations are received."""

from __future__ import annotations

import gc
from pathlib import Path

from infernode.node import Node
from infernode.settings import load_settings


def test_start_with_freeze_heap_moves_the_start_up_objects_out_of_the_collector(tmp_path: Path):
    settings = load_settings(
        None, data_dir=str(tmp_path), database={"url": f"sqlite:///{tmp_path / 'db'}"},
        dicom={"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0},
        web={"enabled": False})
    node = Node.build(settings)
    assert node.embedded is not None  # it preloads highdicom's tables at build
    before = gc.get_freeze_count()
    try:
        node.start(freeze_heap=True)
        frozen = gc.get_freeze_count() - before
        # highdicom's tables alone are hundreds of thousands of objects
        assert frozen > 100_000, frozen
        assert node.server.port > 0
    finally:
        gc.unfreeze()  # this test process goes on running other tests
        node.stop()


def test_start_without_it_freezes_nothing(node_factory):
    before = gc.get_freeze_count()
    node_factory()
    assert gc.get_freeze_count() == before
