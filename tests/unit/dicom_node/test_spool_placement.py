"""The spool's no-replace write: a new instance lands at its final name, an existing file there is
never replaced (the caller learns of a repeat), and no written slot is left either way; the
same with renameat2 and with the hard-link fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node import spool as spool_module
from dicom_node.spool import Spool


@pytest.fixture(params=["renameat2", "link"])
def spool(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Spool:
    if request.param == "link":
        monkeypatch.setattr(spool_module, "_RENAMEAT2", None)
    elif spool_module._RENAMEAT2 is None:
        pytest.skip("this C library has no renameat2")
    s = Spool(tmp_path / "spool", 0)
    s.prepare()
    return s


def test_a_new_instance_is_written_and_a_repeat_is_left_alone(spool: Spool):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert spool.write(b"first", path, replace=False)
    assert path.read_bytes() == b"first"
    assert not spool.write(b"second", path, replace=False)
    assert path.read_bytes() == b"first"
    assert spool.write(b"third", path)  # replace=True: an unindexed leftover is overwritten
    assert path.read_bytes() == b"third"
    assert [p for p in spool.slots_dir.iterdir() if p.stat().st_size] == []


def test_remove_takes_a_written_file_away(spool: Spool):
    path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.6")
    spool.write(b"x", path, replace=False)
    spool.remove(path)
    assert not path.exists()
