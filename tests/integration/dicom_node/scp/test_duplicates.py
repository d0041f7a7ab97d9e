"""A repeated SOP Instance UID through the real SCP (DCMTK storescu as sender), on SQLite and
PostgreSQL: the same content is a plain Success; other content (patient, study, series or pixel
data) is answered with 0xB006 Warning: Elements Discarded (PS3.4 B.2.3), the indexed instance is
left untouched, and the copy is set aside under spool/.rejected/conflicts/ with a record an
operator can list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.support.peers.dcmtk import dataset_bytes, run, storescu

DCMTK_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request):
    # the schema first, so that it is dropped after the node has stopped (fixtures are torn
    # down in reverse order): a running node's assembly thread still writes to it
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return request.getfixturevalue("node_factory")(url)


def send(node, path: Path) -> int:
    result = storescu(node.server.port, [path], extra=["-d"])
    assert result.returncode == 0, result.stderr[-2000:]
    return int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16)


def _write(ds, path: Path) -> Path:
    path.write_bytes(part10(ds))
    return path


def _other_patient(ds) -> None:
    ds.PatientID = "OTHER-PATIENT"


def _other_study(ds) -> None:
    ds.StudyInstanceUID = pydicom.uid.generate_uid()


def _other_series(ds) -> None:
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()


def _other_pixels(ds) -> None:
    pixels = ds.pixel_array.copy()
    pixels[0, 0] += 1
    ds.PixelData = pixels.astype(np.int16).tobytes()


@pytest.mark.parametrize(("change", "differs"), [
    (_other_patient, "patient_id"),
    (_other_study, "study"),
    (_other_series, "series"),
    (_other_pixels, "content"),
])
def test_a_conflicting_duplicate_is_a_warning_and_set_aside(node, tmp_path, change, differs):
    original = ct_dataset()
    first = _write(original, tmp_path / "first.dcm")
    assert send(node, first) == Status.SUCCESS
    conflicting = pydicom.dcmread(first)
    change(conflicting)
    second = _write(conflicting, tmp_path / "second.dcm")

    assert send(node, second) == Status.WARNING_ELEMENTS_DISCARDED

    with node.engine.connect() as conn:
        [(path, duplicates)] = conn.exec_driver_sql(
            "SELECT path, duplicates FROM instances").all()
    assert dataset_bytes(Path(path)) == dataset_bytes(first)  # the indexed one is untouched
    assert duplicates == 1
    [listed] = node.index.conflicts()
    record = listed.record
    assert record.differences == differs
    assert record.sop_instance_uid == original.SOPInstanceUID
    assert record.status == Status.WARNING_ELEMENTS_DISCARDED
    assert record.indexed_path == path and record.calling_ae == "INFERNODE_SCU"
    kept = Path(record.kept_path)
    assert kept.parent == Path(node.settings.dicom.spool_dir) / ".rejected" / "conflicts"
    assert dataset_bytes(kept) == dataset_bytes(second)
    sidecar = json.loads(kept.with_suffix(".json").read_text())
    assert sidecar["differences"] == differs and sidecar["indexed_path"] == path
    assert [r["path"] for r in node.spool.kept_records(conflicts=True)] == [str(kept)]
    assert node.index.failures() == []
    assert node.registry.get_sample_value(
        "infernode_instances_received_total", {"outcome": "conflict"}) == 1.0


def test_the_same_instance_again_is_a_plain_success(node, tmp_path):
    first = _write(ct_dataset(), tmp_path / "first.dcm")
    implicit = tmp_path / "implicit.dcm"
    converted = run(["dcmconv", "+ti", str(first), str(implicit)])
    assert converted.returncode == 0, converted.stderr
    assert send(node, first) == Status.SUCCESS
    assert send(node, first) == Status.SUCCESS
    # The same content in another transfer syntax: pixels are not decoded to be compared, the
    # identifiers agree, so it is a duplicate, not a conflict.
    result = storescu(node.server.port, [implicit], extra=["-d", "-xi"])
    assert int(DCMTK_STATUS.findall(result.stdout + result.stderr)[-1], 16) == Status.SUCCESS
    assert node.index.conflicts() == []
    with node.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT duplicates FROM instances").scalar_one() == 2
    assert list((Path(node.settings.dicom.spool_dir) / ".rejected").rglob("*.dcm")) == []
