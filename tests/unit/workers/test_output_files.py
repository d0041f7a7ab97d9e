"""Output files are written whole or not at all (`workers.pipelines.files`): a write that fails
part way leaves the earlier file as it was and no temporary file; a finished one replaces it."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.integration.dicom_node.damaged_corpus import ct_dataset
from workers.pipelines.files import write_dataset, write_output


def test_a_write_cut_part_way_leaves_the_earlier_file_whole(tmp_path: Path):
    path = tmp_path / "report.hl7"
    write_output(path, lambda out: out.write(b"MSH|first whole report"))

    def cut(out) -> None:
        out.write(b"MSH|second rep")
        raise KeyboardInterrupt  # the thread stops part way

    with pytest.raises(KeyboardInterrupt):
        write_output(path, cut)
    assert path.read_bytes() == b"MSH|first whole report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.hl7"]


def test_a_dataset_is_written_as_a_part10_file(tmp_path: Path):
    ds = ct_dataset()
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    write_dataset(path, ds)
    back = pydicom.dcmread(path)
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
