"""Reads, from the received bytes, the header facts the index and routing need.

Tolerant when reading (CONVENTIONS 5): a missing optional tag becomes None; a missing or invalid
identifier raises `CannotUnderstand`/`InvalidUID`, so nothing unidentifiable is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_node.errors import CannotUnderstand, DatasetMismatch
from dicom_node.uids import checked_uid


@dataclass(frozen=True)
class InstanceHeader:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str | None
    body_part_examined: str | None
    series_description: str | None
    protocol_name: str | None
    image_type: tuple[str, ...]
    series_number: int | None
    instance_number: int | None
    slice_thickness: float | None
    images_in_acquisition: int | None
    patient_id: str | None
    accession_number: str | None
    study_date: str | None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _number(ds: Dataset, keyword: str, kind: type[Any]) -> Any:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def read_header(
    raw: bytes, *, expected_sop_class: str, expected_sop_instance: str, transfer_syntax: str
) -> InstanceHeader:
    """Parses `raw` (file meta + data set, as written to the spool) without its pixel data.

    Raises CannotUnderstand when the bytes cannot be parsed or lack an identifier, and
    DatasetMismatch when the data set's SOP Class/Instance UIDs contradict the C-STORE request.
    """
    try:
        ds = dcmread(BytesIO(raw), stop_before_pixels=True)
        # Touch every element once so a damaged data set fails here, not later.
        for _ in ds:
            pass
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise CannotUnderstand(f"data set cannot be parsed: {type(exc).__name__}") from exc
    study = checked_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")
    series = checked_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
    sop_instance = checked_uid(ds.get("SOPInstanceUID", expected_sop_instance), "SOPInstanceUID")
    sop_class = checked_uid(ds.get("SOPClassUID", expected_sop_class), "SOPClassUID")
    if sop_instance != expected_sop_instance:
        raise DatasetMismatch("SOPInstanceUID differs from the C-STORE Affected SOP Instance UID")
    if sop_class != expected_sop_class:
        raise DatasetMismatch("SOPClassUID differs from the C-STORE Affected SOP Class UID")
    image_type = ds.get("ImageType")
    if image_type is None:
        types: tuple[str, ...] = ()
    elif isinstance(image_type, str):
        types = (image_type,)
    else:
        types = tuple(str(v) for v in image_type)
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        transfer_syntax_uid=transfer_syntax,
        modality=_text(ds, "Modality"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        image_type=types,
        series_number=_number(ds, "SeriesNumber", int),
        instance_number=_number(ds, "InstanceNumber", int),
        slice_thickness=_number(ds, "SliceThickness", float),
        images_in_acquisition=_number(ds, "ImagesInAcquisition", int),
        patient_id=_text(ds, "PatientID"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
    )
