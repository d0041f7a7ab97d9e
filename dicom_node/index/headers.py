"""Reads, from the received bytes, the header facts the index and routing need.

Strict about structure, tolerant about values (CONVENTIONS 5): `parse.parse_instance` refuses a
damaged data set; here a missing or unusable optional value becomes None, while a missing or
invalid identifier raises `InvalidUID` and a data set contradicting the command or the presentation
context raises `DatasetMismatch` (PS3.4 B.2.3), so nothing unidentifiable is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_node.buffers import Received
from dicom_node.errors import DatasetMismatch
from dicom_node.index.parse import parse_instance
from dicom_node.index.values import (
    int_value,
    normalise_date,
    number_value,
    text_value,
    text_values,
)
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


def _uid(ds: Dataset, keyword: str) -> str:
    return checked_uid(text_value(ds, keyword), keyword)


def read_header(
    raw: Received,
    *,
    expected_sop_class: str,
    expected_sop_instance: str,
    transfer_syntax: str,
    context_sop_class: str | None = None,
) -> InstanceHeader:
    """Validates `raw` (file meta + data set, as written to the spool) and reads its header.

    `expected_*` come from the C-STORE request (or a STOW part's File Meta); `context_sop_class`
    is the abstract syntax of the presentation context the instance arrived on.
    Raises CannotUnderstand (and its subclasses) when the bytes are damaged or lack an identifier,
    DatasetMismatch when the data set's SOP Class/Instance UID contradicts the request or the
    presentation context (PS3.4 B.2.3, 0xA900).
    """
    parsed = parse_instance(raw, transfer_syntax)
    ds = parsed.dataset
    sop_class = _uid(ds, "SOPClassUID")
    sop_instance = _uid(ds, "SOPInstanceUID")
    if sop_class != expected_sop_class:
        raise DatasetMismatch("SOPClassUID differs from the C-STORE Affected SOP Class UID")
    if context_sop_class is not None and sop_class != context_sop_class:
        raise DatasetMismatch("SOPClassUID differs from the presentation context")
    if sop_instance != expected_sop_instance:
        raise DatasetMismatch("SOPInstanceUID differs from the C-STORE Affected SOP Instance UID")
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_uid(ds, "SeriesInstanceUID"),
        transfer_syntax_uid=transfer_syntax,
        modality=text_value(ds, "Modality"),
        body_part_examined=text_value(ds, "BodyPartExamined"),
        series_description=text_value(ds, "SeriesDescription"),
        protocol_name=text_value(ds, "ProtocolName"),
        image_type=text_values(ds, "ImageType"),
        series_number=int_value(ds, "SeriesNumber"),
        instance_number=int_value(ds, "InstanceNumber"),
        slice_thickness=number_value(ds, "SliceThickness"),
        images_in_acquisition=int_value(ds, "ImagesInAcquisition"),
        patient_id=text_value(ds, "PatientID"),
        accession_number=text_value(ds, "AccessionNumber"),
        study_date=normalise_date(text_value(ds, "StudyDate")),
    )
