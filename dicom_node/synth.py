"""Builds standard-conformant DICOM instances from arrays: sample studies for the demo and
real-looking source series for tests.

The objects carry the modules the CT Image, MR Image and Digital X-Ray IODs require
(PS3.3 A.3, A.4, A.26), so that validators judge our outputs, not broken inputs. Nothing here
is used on the receive path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_ANATOMY = {
    "HAND": ("85562004", "SCT"),
    "WRIST": ("8205005", "SCT"),
    "CHEST": ("51185008", "SCT"),
    "ANKLE": ("344001", "SCT"),
    "KNEE": ("72696002", "SCT"),
}

SYNTH_UID_ROOT = "1.2.826.0.1.3680043.10.1563.9."
"""Sample objects get UIDs under a branch of their own, never the node's output branch."""


@dataclass(frozen=True)
class StudyIdentity:
    """Patient and study attributes shared by every instance of one sample study."""

    patient_id: str = "PHANTOM-0001"
    patient_name: str = "Phantom^Head"
    patient_birth_date: str = "19600101"
    patient_sex: str = "O"
    accession_number: str = "ACC0001"
    study_instance_uid: str = field(default_factory=lambda: generate_uid(SYNTH_UID_ROOT))
    study_id: str = "1"
    study_date: str = "20260101"
    study_time: str = "120000"
    study_description: str = "CT HEAD WO CONTRAST"
    referring_physician: str = "Referrer^Sample"


@dataclass(frozen=True)
class SeriesSpec:
    """What distinguishes one series: modality, description, numbering and acquisition facts."""

    modality: str = "CT"
    series_description: str = "Head 5mm axial"
    series_number: int = 2
    body_part: str = "HEAD"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    # DiffusionBValue (0018,9087) belongs to the Enhanced MR IOD; classic MR scanners put the b
    # value in ImageComments or a private tag, as the sample series do.
    series_instance_uid: str = field(default_factory=lambda: generate_uid(SYNTH_UID_ROOT))
    frame_of_reference_uid: str = field(default_factory=lambda: generate_uid(SYNTH_UID_ROOT))
    protocol_name: str | None = None
    manufacturer: str = "InferNode Phantom"
    diffusion_b_value: float | None = None


def _base(identity: StudyIdentity, spec: SeriesSpec, sop_class: str, number: int) -> Dataset:
    ds = Dataset()
    sop_uid = generate_uid(SYNTH_UID_ROOT)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    now = datetime.now()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Patient, General Study
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    ds.ReferringPhysicianName = identity.referring_physician
    ds.StudyDescription = identity.study_description
    # General Series, Frame of Reference, General Equipment
    ds.Modality = spec.modality
    ds.SeriesInstanceUID = spec.series_instance_uid
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.series_description
    ds.SeriesDate = identity.study_date
    ds.SeriesTime = identity.study_time
    ds.BodyPartExamined = spec.body_part
    if spec.protocol_name:
        ds.ProtocolName = spec.protocol_name
    ds.Manufacturer = spec.manufacturer
    ds.ManufacturerModelName = "Synthetic"
    ds.SoftwareVersions = "1"
    ds.DeviceSerialNumber = "0"
    ds.InstitutionName = "InferNode Sample Hospital"
    # General Image
    ds.InstanceNumber = number
    ds.ContentDate = identity.study_date
    ds.ContentTime = identity.study_time
    ds.ImageType = list(spec.image_type)
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray, *, signed: bool) -> None:
    arr = pixels.astype(np.int16 if signed else np.uint16)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def volume_series(
    volume: np.ndarray,
    spacing: Sequence[float],
    *,
    identity: StudyIdentity,
    spec: SeriesSpec,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    row_direction: Sequence[float] = (1.0, 0.0, 0.0),
    column_direction: Sequence[float] = (0.0, 1.0, 0.0),
    slice_step: Sequence[float] | None = None,
) -> list[Dataset]:
    """One single-frame instance per slice of `volume` (slices, rows, columns).

    For CT the values are Hounsfield units stored with RescaleIntercept -1024; for MR they are
    stored as they are. `spacing` is (slice, row, column) in mm. Slice `k` lies at
    ``origin + k * slice_step``; by default the step is `spacing[0]` along the normal of the
    row and column directions, and a different step models a gantry tilt.
    """
    row = np.asarray(row_direction, dtype=float)
    col = np.asarray(column_direction, dtype=float)
    normal = np.cross(row, col)
    step = (
        np.asarray(slice_step, dtype=float)
        if slice_step is not None
        else normal * float(spacing[0])
    )
    sop_class = CTImageStorage if spec.modality == "CT" else MRImageStorage
    out = []
    for k in range(volume.shape[0]):
        ds = _base(identity, spec, sop_class, k + 1)
        ds.FrameOfReferenceUID = spec.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        position = np.asarray(origin, dtype=float) + k * step
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0])
        ds.SliceLocation = round(float(np.dot(position, normal)), 4)
        ds.PatientPosition = "HFS"
        if spec.modality == "CT":
            ds.AcquisitionNumber = 1
            ds.KVP = 120
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter = 40
            ds.WindowWidth = 80
            _set_pixels(ds, np.clip(volume[k] + 1024, 0, 65535), signed=False)
        else:
            ds.ScanningSequence = "EP"
            ds.SequenceVariant = "SK"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime = 90
            ds.RepetitionTime = 5000
            ds.EchoTrainLength = 1
            ds.MagneticFieldStrength = 1.5
            if spec.diffusion_b_value is not None:
                ds.ImageComments = f"b={spec.diffusion_b_value:g}"
                ds.SequenceName = f"*ep_b{spec.diffusion_b_value:g}t"
            _set_pixels(ds, np.clip(volume[k], 0, 65535), signed=False)
        out.append(ds)
    return out


def radiograph(
    image: np.ndarray,
    pixel_spacing: Sequence[float],
    *,
    identity: StudyIdentity,
    spec: SeriesSpec,
) -> Dataset:
    """A Digital X-Ray Image (For Presentation) instance of one 2D image (rows, columns)."""
    ds = _base(identity, spec, DigitalXRayImageStorageForPresentation, 1)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [float(v) for v in pixel_spacing]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    _set_pixels(ds, np.clip(image, 0, 4095), signed=False)
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.DetectorType = "SCINTILLATOR"
    ds.ViewPosition = "AP"
    ds.PositionerType = ""
    ds.ImageLaterality = "U"
    ds.AcquisitionContextSequence = []
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = _ANATOMY.get(spec.body_part, _ANATOMY["HAND"])
    region.CodeMeaning = spec.body_part.title()
    ds.AnatomicRegionSequence = [region]
    return ds


def write_series(datasets: Sequence[Dataset], folder: str) -> list[str]:
    """Writes each dataset as `<folder>/<InstanceNumber:04d>.dcm`; returns the paths."""
    from pathlib import Path

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = target / f"{ds.SeriesNumber:03d}_{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    return paths
