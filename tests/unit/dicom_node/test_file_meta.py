"""The spool file's File Meta Information, written directly (`scp.storage.file_meta_bytes`), is
byte for byte what pydicom writes for the same elements, and reads back with its AE titles."""

from __future__ import annotations

from io import BytesIO

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from dicom_node.scp.storage import file_meta_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pydicom(meta: FileMetaDataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def test_same_bytes_as_pydicom_for_odd_and_even_lengths():
    for sop, ae in (("1.2.3.45", "CT01"), ("1.2.3.4", "SCANNER7")):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.3811.3.0.4"
        meta.ImplementationVersionName = "PYNETDICOM_304"
        meta.SendingApplicationEntityTitle = ae
        meta.ReceivingApplicationEntityTitle = "INFERNODE"
        ours = file_meta_bytes((
            (0x0002, "UI", CT), (0x0003, "UI", sop), (0x0010, "UI", "1.2.840.10008.1.2.1"),
            (0x0012, "UI", "1.2.826.0.1.3680043.9.3811.3.0.4"), (0x0013, "SH", "PYNETDICOM_304"),
            (0x0017, "AE", ae), (0x0018, "AE", "INFERNODE"),
        ))
        assert ours == _pydicom(meta)
        read = pydicom.dcmread(BytesIO(b"\0" * 128 + b"DICM" + ours), force=True)
        assert read.file_meta.SendingApplicationEntityTitle == ae
        assert read.file_meta.MediaStorageSOPInstanceUID == sop


def test_empty_values_are_left_out():
    meta = file_meta_bytes(((0x0002, "UI", CT), (0x0017, "AE", "")))
    assert b"AE" not in meta[12:]
    assert int.from_bytes(meta[8:12], "little") == len(meta) - 12
