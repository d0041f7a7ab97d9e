"""How a repeated SOP Instance UID is compared with the indexed instance (`store.differences`):
identifiers from the header, pixel content by a hash computed only now, from the received bytes
and from the indexed instance's spool file (or from its row, when an older row holds one)."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.index.headers import InstanceHeader, read_header
from dicom_node.index.parse import content_sha256
from dicom_node.index.store import StoredInstance, differences
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series


def _ct() -> Dataset:
    volume = np.random.default_rng(7).integers(-100, 200, (1, 16, 16)).astype(np.int16)
    [ds] = volume_series(volume, (1, 1, 1), identity=StudyIdentity(), spec=SeriesSpec())
    return ds


def _raw(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _header(raw: bytes, ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> InstanceHeader:
    return read_header(raw, expected_sop_class=ds.SOPClassUID,
                       expected_sop_instance=ds.SOPInstanceUID, transfer_syntax=syntax)


def _indexed(header: InstanceHeader, path: str = "/spool/indexed.dcm",
             digest: str | None = None) -> StoredInstance:
    """The row of the instance indexed first (no hash: written on receipt without one)."""
    return StoredInstance(
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid, patient_id=header.patient_id,
        transfer_syntax_uid=header.transfer_syntax_uid, content_sha256=digest, path=path)


def _files(**files: bytes):
    read: list[str] = []

    def read_stored(path: str) -> bytes:
        read.append(path)
        return files[path]
    return read_stored, read


def test_the_same_pixels_under_another_header_are_no_difference():
    ds = _ct()
    first = _raw(ds)
    indexed = _indexed(_header(first, ds))
    ds.SeriesDescription = "edited description"
    again = _raw(ds)
    read_stored, read = _files(**{indexed.path: first})
    assert differences(_header(again, ds), indexed, again, read_stored=read_stored) == ()
    assert read == [indexed.path]  # the indexed copy's hash, from its file


def test_other_pixels_are_a_content_difference_found_from_the_stored_file():
    ds = _ct()
    first = _raw(ds)
    indexed = _indexed(_header(first, ds))
    pixels = ds.pixel_array.copy()
    pixels[3, 4] += 1
    ds.PixelData = pixels.astype(np.int16).tobytes()
    other = _raw(ds)
    read_stored, _ = _files(**{indexed.path: first})
    assert differences(_header(other, ds), indexed, other,
                       read_stored=read_stored) == ("content",)


def test_identifiers_and_content_are_all_named():
    ds = _ct()
    first = _raw(ds)
    indexed = replace(_indexed(_header(first, ds)), patient_id="SOMEONE-ELSE",
                      series_instance_uid="1.2.3.4")
    ds.PixelData = np.zeros((16, 16), np.int16).tobytes()
    other = _raw(ds)
    read_stored, _ = _files(**{indexed.path: first})
    assert differences(_header(other, ds), indexed, other, read_stored=read_stored) == (
        "patient_id", "series", "content")


def test_a_row_that_holds_a_hash_is_compared_without_reading_the_file():
    ds = _ct()
    first = _raw(ds)
    header = _header(first, ds)
    indexed = _indexed(header, digest=content_sha256(first, ExplicitVRLittleEndian))
    read_stored, read = _files()
    assert differences(header, indexed, first, read_stored=read_stored) == ()
    assert read == []
    stale = replace(indexed, content_sha256="0" * 64)
    assert differences(header, stale, first, read_stored=read_stored) == ("content",)


def test_another_transfer_syntax_is_not_compared_by_content():
    ds = _ct()
    first = _raw(ds)
    indexed = _indexed(_header(first, ds))
    ds.PixelData = np.ones((16, 16), np.int16).tobytes()
    implicit = _raw(ds, ImplicitVRLittleEndian)
    read_stored, read = _files()
    header = _header(implicit, ds, ImplicitVRLittleEndian)
    assert differences(header, indexed, implicit, read_stored=read_stored) == ()
    assert read == []


@pytest.mark.parametrize("stored", [None, b"not a DICOM file"])
def test_an_indexed_file_that_cannot_be_read_leaves_the_content_uncompared(stored, caplog):
    ds = _ct()
    first = _raw(ds)
    indexed = _indexed(_header(first, ds))
    ds.PixelData = np.ones((16, 16), np.int16).tobytes()
    other = _raw(ds)

    def read_stored(path: str) -> bytes:
        if stored is None:
            raise FileNotFoundError(path)
        return stored

    assert differences(_header(other, ds), indexed, other, read_stored=read_stored) == ()
    assert "content not compared" in caplog.text
