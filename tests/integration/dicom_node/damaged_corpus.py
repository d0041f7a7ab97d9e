"""A corpus of damaged DICOM files, built by the tests themselves (nothing is shipped).

Each `Case` writes one Part 10 file whose File Meta names the SOP class, instance and transfer
syntax a sender puts in its C-STORE command, while the data set carries the damage. `dcmtk` says
whether DCMTK's storescu can send the file as it is (it re-encodes what it reads, so it cannot
carry byte-level damage: those cases go out through pynetdicom's raw sender, which streams the
file's data set bytes unchanged).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from dicom_node.status import Status
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series

CANNOT_UNDERSTAND = Status.CANNOT_UNDERSTAND
MISMATCH = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


def ct_dataset(size: int = 32, seed: int = 0) -> Dataset:
    """One valid CT slice (Explicit VR Little Endian, int16 pixels) with its File Meta."""
    volume = np.random.default_rng(seed).integers(-100, 200, (1, size, size)).astype(np.int16)
    [ds] = volume_series(volume, (2.0, 0.5, 0.5), identity=StudyIdentity(), spec=SeriesSpec())
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def data_set_offset(raw: bytes) -> int:
    """Where the data set starts: after preamble, prefix and the File Meta group."""
    (group_length,) = struct.unpack_from("<L", raw, 140)
    return 144 + group_length


def element_at(raw: bytes, tag: int, vr: bytes) -> int:
    """Offset of an Explicit VR Little Endian element header in the data set."""
    needle = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    found = raw.find(needle, data_set_offset(raw))
    assert found > 0, f"element {tag:08X} not found"
    return found


def _with_meta(ds: Dataset, body: bytes, **meta_values: str) -> bytes:
    """A File Meta for `ds`'s identifiers with `meta_values` changed, followed by `body`."""
    meta = FileMetaDataset(ds.file_meta)
    for keyword, value in meta_values.items():
        setattr(meta, keyword, value)
    buffer = BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue() + body


# -- the damaged variants ----------------------------------------------------------------------

def truncated_in_pixel_data() -> bytes:
    return part10(ct_dataset())[:-700]


def truncated_in_header() -> bytes:
    raw = part10(ct_dataset())
    return raw[:element_at(raw, 0x0020000D, b"UI") + 14]  # inside the Study Instance UID value


def truncated_deflated() -> bytes:
    ds = ct_dataset()
    raw = part10(ds)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(raw[data_set_offset(raw):]) + deflater.flush()
    return _with_meta(ds, body[: len(body) // 2], TransferSyntaxUID=DeflatedExplicitVRLittleEndian)


def deflate_garbage() -> bytes:
    ds = ct_dataset()
    return _with_meta(ds, b"\xff\xfe\xfd" * 300, TransferSyntaxUID=DeflatedExplicitVRLittleEndian)


def pixel_data_huge_length() -> bytes:
    raw = bytearray(part10(ct_dataset()))
    at = element_at(bytes(raw), 0x7FE00010, b"OW")
    struct.pack_into("<L", raw, at + 8, 0xFFFFFFF0)
    return bytes(raw)


def text_element_huge_length() -> bytes:
    raw = bytearray(part10(ct_dataset()))
    struct.pack_into("<H", raw, element_at(bytes(raw), 0x0008103E, b"LO") + 6, 0xFFFE)
    return bytes(raw)


def _short(**changes: object) -> Callable[[], bytes]:
    def build() -> bytes:
        ds = ct_dataset()
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        return part10(ds)
    return build


def missing(keyword: str) -> Callable[[], bytes]:
    def build() -> bytes:
        ds = ct_dataset()
        delattr(ds, keyword)
        return part10(ds)
    return build


def sop_class_other_than_command(sop_class: str) -> Callable[[], bytes]:
    """File Meta (and so the C-STORE command) says CT; the data set says `sop_class`."""
    def build() -> bytes:
        ds = ct_dataset()
        ds.SOPClassUID = sop_class
        raw = part10(ds)
        return _with_meta(ds, raw[data_set_offset(raw):], MediaStorageSOPClassUID=CTImageStorage)
    return build


def group_0002_in_data_set() -> bytes:
    raw = part10(ct_dataset())
    at = data_set_offset(raw)
    element = struct.pack("<HH2sH", 0x0002, 0x0016, b"AE", 6) + b"EVIL  "
    return raw[:at] + element + raw[at:]


def unknown_vr(vr: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        raw = bytearray(part10(ct_dataset()))
        at = element_at(bytes(raw), 0x00080060, b"CS")
        raw[at + 4:at + 6] = vr
        return bytes(raw)
    return build


def nested_too_deep(depth: int = 40) -> bytes:
    ds = ct_dataset()
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = inner.ContentSequence
    return part10(ds)


def item_tag_damaged() -> bytes:
    ds = ct_dataset()
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = Sequence([item])
    raw = bytearray(part10(ds))
    at = element_at(bytes(raw), 0x00081140, b"SQ") + 12
    assert raw[at:at + 4] == b"\xfe\xff\x00\xe0"
    raw[at:at + 4] = b"\x08\x00\x50\x11"
    return bytes(raw)


def undefined_length_text() -> bytes:
    ds = ct_dataset()
    ds.add_new(0x00324000, "LT", "x")  # placeholder, turned into an undefined-length UT
    raw = bytearray(part10(ds))
    at = element_at(bytes(raw), 0x00324000, b"LT")
    head = struct.pack("<HH2sHL", 0x0032, 0x4000, b"UT", 0, 0xFFFFFFFF)
    return bytes(raw[:at]) + head + bytes(raw[at + 8 + 2:])


def _rle() -> tuple[Dataset, bytes]:
    ds = ct_dataset()
    ds.compress(RLELossless)
    return ds, part10(ds)


def encapsulated_unterminated() -> bytes:
    _, raw = _rle()
    return raw[:-8]


def native_pixels_in_compressed_syntax() -> bytes:
    ds = ct_dataset()
    raw = part10(ds)
    return _with_meta(ds, raw[data_set_offset(raw):], TransferSyntaxUID=RLELossless)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    status: Status
    reason_code: str
    dcmtk: bool = False
    """DCMTK's storescu sends this file unchanged enough to carry the damage."""

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.name}.dcm"
        path.write_bytes(self.build())
        return path


CORPUS: tuple[Case, ...] = (
    Case("truncated-in-pixel-data", truncated_in_pixel_data, CANNOT_UNDERSTAND, "truncated"),
    Case("truncated-in-header", truncated_in_header, CANNOT_UNDERSTAND, "truncated"),
    Case("truncated-deflated", truncated_deflated, CANNOT_UNDERSTAND, "truncated"),
    Case("deflate-garbage", deflate_garbage, CANNOT_UNDERSTAND, "malformed"),
    Case("pixel-data-huge-length", pixel_data_huge_length, CANNOT_UNDERSTAND, "truncated"),
    Case("text-huge-length", text_element_huge_length, CANNOT_UNDERSTAND, "truncated"),
    Case("pixel-data-short-rows", _short(Rows=64), CANNOT_UNDERSTAND, "pixel_data_length",
         dcmtk=True),
    Case("pixel-data-short-frames", _short(NumberOfFrames=3), CANNOT_UNDERSTAND,
         "pixel_data_length", dcmtk=True),
    Case("pixel-data-short-bits", _short(BitsAllocated=32), CANNOT_UNDERSTAND,
         "pixel_data_length", dcmtk=True),
    Case("pixel-data-short-samples", _short(SamplesPerPixel=3), CANNOT_UNDERSTAND,
         "pixel_data_length", dcmtk=True),
    Case("missing-sop-instance-uid", missing("SOPInstanceUID"), CANNOT_UNDERSTAND,
         "invalid_uid"),
    Case("missing-sop-class-uid", missing("SOPClassUID"), CANNOT_UNDERSTAND, "invalid_uid"),
    Case("sop-class-mr-on-ct", sop_class_other_than_command(MRImageStorage), MISMATCH,
         "dataset_mismatch"),
    Case("sop-class-sc-on-ct", sop_class_other_than_command(SecondaryCaptureImageStorage),
         MISMATCH, "dataset_mismatch"),
    Case("group-0002-in-data-set", group_0002_in_data_set, CANNOT_UNDERSTAND, "malformed",
         dcmtk=True),
    Case("unknown-vr-letters", unknown_vr(b"QQ"), CANNOT_UNDERSTAND, "malformed"),
    Case("unknown-vr-binary", unknown_vr(b"\x00\x01"), CANNOT_UNDERSTAND, "malformed"),
    Case("nested-too-deep", nested_too_deep, CANNOT_UNDERSTAND, "malformed", dcmtk=True),
    Case("item-tag-damaged", item_tag_damaged, CANNOT_UNDERSTAND, "malformed"),
    Case("undefined-length-text", undefined_length_text, CANNOT_UNDERSTAND, "malformed"),
    Case("encapsulated-unterminated", encapsulated_unterminated, CANNOT_UNDERSTAND,
         "truncated"),
    Case("native-pixels-in-rle-syntax", native_pixels_in_compressed_syntax, CANNOT_UNDERSTAND,
         "malformed"),
)
"""Every damaged variant, with the status and reason code the node must answer."""
