"""Header reading and UID checks on the receive path (pure, no network)."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest

from dicom_node.errors import CannotUnderstand, DatasetMismatch, InvalidUID
from dicom_node.index.headers import read_header
from dicom_node.spool import Spool
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series
from dicom_node.uids import checked_uid, is_valid_uid


def _raw(ds) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def ct():
    [ds] = volume_series(np.zeros((1, 8, 8), np.int16), (1, 1, 1),
                         identity=StudyIdentity(), spec=SeriesSpec())
    return ds


def test_header_carries_the_routing_tags(ct):
    h = read_header(_raw(ct), expected_sop_class=ct.SOPClassUID,
                    expected_sop_instance=ct.SOPInstanceUID, transfer_syntax="1.2.840.10008.1.2.1")
    assert (h.modality, h.body_part_examined, h.image_type) == (
        "CT", "HEAD", ("ORIGINAL", "PRIMARY", "AXIAL"))
    assert h.study_instance_uid == ct.StudyInstanceUID
    assert h.slice_thickness == 1.0


def test_instance_uid_contradicting_the_command_is_a_mismatch(ct):
    with pytest.raises(DatasetMismatch):
        read_header(_raw(ct), expected_sop_class=ct.SOPClassUID,
                    expected_sop_instance="1.2.3", transfer_syntax="1.2.840.10008.1.2.1")


def test_garbage_is_cannot_understand(ct):
    with pytest.raises(CannotUnderstand):
        read_header(b"\0" * 128 + b"DICM" + b"\xff" * 50, expected_sop_class="1.2",
                    expected_sop_instance="1.2", transfer_syntax="1.2.840.10008.1.2.1")


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0.1", "2.25.123"])
def test_valid_uids(uid):
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["", "1..2", "1.02", "../x", "1.2/3", "1." + "1" * 70, "1.2 "])
def test_invalid_uids(uid):
    assert not is_valid_uid(uid)


def test_spool_paths_refuse_traversal(tmp_path):
    spool = Spool(tmp_path, 0)
    with pytest.raises(InvalidUID):
        spool.path_for("1.2", "..", "1.3")
    assert spool.path_for("1.2", "1.3", "1.4") == tmp_path / "1.2" / "1.3" / "1.4.dcm"
    assert checked_uid(" 1.2\x00", "x") == "1.2"
