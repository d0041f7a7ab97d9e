"""The receive path's checks without a network: structure walk, value fitting, and the one mapping
from exceptions to statuses."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text
from sqlalchemy.exc import DataError

import dicom_node.index.parse as parse
from dicom_node.errors import (
    CannotUnderstand,
    DatasetMismatch,
    IndexWriteFailed,
    MalformedDataSet,
    PixelDataTooShort,
    StoreRefused,
)
from dicom_node.index.headers import read_header
from dicom_node.index.values import clean_text, fit, normalise_date
from dicom_node.ingest import refusal_for
from dicom_node.status import Status
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series


def _ct(**changes: object) -> Dataset:
    [ds] = volume_series(np.zeros((1, 8, 8), np.int16), (1, 1, 1),
                         identity=StudyIdentity(), spec=SeriesSpec())
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _raw(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _header(raw: bytes, ds: Dataset, syntax: str = ExplicitVRLittleEndian, **kw: object):
    return read_header(raw, expected_sop_class=ds.SOPClassUID,
                       expected_sop_instance=ds.SOPInstanceUID, transfer_syntax=syntax, **kw)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    DeflatedExplicitVRLittleEndian])
def test_valid_instances_pass_in_each_native_syntax(syntax):
    ds = _ct()
    raw = _raw(ds, syntax)
    header = _header(raw, ds, syntax)
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert (header.modality, header.transfer_syntax_uid) == ("CT", syntax)
    # hashed only when a repeat is compared: the header carries no hash
    assert not hasattr(header, "content_sha256")
    digest = parse.content_sha256(raw, syntax)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_the_content_hash_follows_the_pixels_not_the_header():
    ds = _ct()
    one = parse.content_sha256(_raw(ds), ExplicitVRLittleEndian)
    ds.SeriesDescription = "another description"
    assert parse.content_sha256(_raw(ds), ExplicitVRLittleEndian) == one
    ds.PixelData = np.ones((8, 8), np.int16).tobytes()
    assert parse.content_sha256(_raw(ds), ExplicitVRLittleEndian) != one


def test_the_content_hash_is_the_same_across_deflate_for_the_same_pixels():
    ds = _ct()
    explicit = parse.content_sha256(_raw(ds), ExplicitVRLittleEndian)
    deflated = _raw(ds, DeflatedExplicitVRLittleEndian)
    assert parse.content_sha256(deflated, DeflatedExplicitVRLittleEndian) == explicit


def test_zero_padding_after_the_last_element_is_accepted_other_bytes_are_not():
    ds = _ct()
    assert _header(_raw(ds) + b"\0" * 4, ds).sop_instance_uid == ds.SOPInstanceUID
    with pytest.raises(CannotUnderstand, match="cut short"):
        _header(_raw(ds) + b"\x08\x00\x20", ds)


def test_a_deflate_bomb_is_refused(monkeypatch):
    ds = _ct()
    monkeypatch.setattr(parse, "MAX_INFLATED_BYTES", 100)
    with pytest.raises(MalformedDataSet, match="size limit"):
        _header(_raw(ds, DeflatedExplicitVRLittleEndian), ds, DeflatedExplicitVRLittleEndian)


def test_a_deflated_stream_of_garbage_is_malformed():
    ds = _ct()
    raw = _raw(ds, DeflatedExplicitVRLittleEndian)
    (meta_length,) = struct.unpack_from("<L", raw, 140)
    garbage = raw[:144 + meta_length] + zlib.compress(b"x")[:3] + b"\xff" * 40
    with pytest.raises(MalformedDataSet):
        _header(garbage, ds, DeflatedExplicitVRLittleEndian)


def test_the_data_set_must_match_the_presentation_context():
    ds = _ct()
    with pytest.raises(DatasetMismatch, match="presentation context"):
        _header(_raw(ds), ds, context_sop_class=MRImageStorage)


@pytest.mark.parametrize(("changes", "expected"), [
    # 64 one-bit pixels fit 8 bytes (PS3.5 8.1.1: bit-packed)
    ({"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0, "PixelData": bytes(8)}, None),
    ({"Rows": 9}, "144 expected"),
    ({"NumberOfFrames": 2}, "256 expected"),
])
def test_native_pixel_length_uses_every_factor(changes, expected):
    ds = _ct(**changes)
    if expected is None:
        assert _header(_raw(ds), ds).sop_instance_uid == ds.SOPInstanceUID
    else:
        with pytest.raises(PixelDataTooShort, match=expected):
            _header(_raw(ds), ds)


def test_ybr_full_422_counts_two_samples_per_pixel():
    ds = _ct(SamplesPerPixel=3, PhotometricInterpretation="YBR_FULL_422", BitsAllocated=8,
             BitsStored=8, HighBit=7, PlanarConfiguration=0, PixelRepresentation=0)
    ds.PixelData = bytes(8 * 8 * 2)
    assert _header(_raw(ds), ds).sop_instance_uid == ds.SOPInstanceUID


@pytest.mark.parametrize(("value", "expected"), [
    ("20260101", "20260101"), ("2026.01.01", "20260101"), (" 2026-01-31 ", "20260131"),
    ("20260230", None), ("2026", None), ("20260101-20260131", None), ("", None), (None, None),
])
def test_dates_are_normalised_or_dropped(value, expected):
    assert normalise_date(value) == expected


def test_text_is_cleaned_the_same_way_for_every_database():
    assert clean_text(["A", "B"]) == "A\\B"
    assert clean_text(" P\x00ID \x00") == "PID"
    assert clean_text(b"\xe9t\xe9") == "été"
    table = Table("t", MetaData(), Column("s", String(4)), Column("i", Integer),
                  Column("f", Float), Column("x", Text))
    assert fit(table, {"s": "abc\x00def", "i": 3_000_000_000, "f": float("nan"),
                       "x": "a\x00b"}) == {"s": "abcd", "i": None, "f": None, "x": "ab"}
    assert fit(table, {"i": -5, "f": 1.5}) == {"i": -5, "f": 1.5}


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("x"), struct.error("x"),
                                   NotImplementedError("x"), OverflowError("x"),
                                   RecursionError("x"), zlib.error("x"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x")])
def test_every_parse_error_is_cannot_understand(error):
    refused = refusal_for(error)
    assert refused.status == Status.CANNOT_UNDERSTAND
    assert "x" not in refused.reason.split(":")[-1].strip()


def test_a_database_error_is_a_processing_failure_without_its_parameters():
    error = DataError("INSERT INTO studies (patient_id) VALUES (%s)", {"patient_id": "PHI-1"},
                      Exception("value too long"))
    refused = refusal_for(error)
    assert isinstance(refused, IndexWriteFailed)
    assert refused.status == Status.PROCESSING_FAILURE
    assert "PHI-1" not in refused.reason and "INSERT" not in refused.reason
    assert refusal_for(RuntimeError("boom")).reason == "internal error: RuntimeError"
    kept = StoreRefused("as is")
    assert refusal_for(kept) is kept
