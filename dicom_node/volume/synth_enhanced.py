"""Sample Enhanced CT / Enhanced MR multi-frame instances built from arrays (test and demo data).

One instance holds every slice as a frame; the plane geometry lives in functional groups
(PS3.3 C.7.6.16): Pixel Measures, Plane Orientation and Pixel Value Transformation shared, Plane
Position and Frame Content per frame, with a one-dimension organisation along the stack
(PS3.3 C.7.6.17). Built from the classic instances of `dicom_node.synth`, so both forms of a
series carry the same pixels and identifiers. Nothing here is used on the receive path.

Scope: the modules and functional groups the series reader depends on. The acquisition macros
the Enhanced CT / MR IODs also require (CT Exposure, MR Echo, Frame Anatomy...) are absent, so
dciodvfy reports them; use these objects as reader input, not as conformance references.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EnhancedCTImageStorage, EnhancedMRImageStorage, generate_uid

from dicom_node.synth import SYNTH_UID_ROOT, SeriesSpec, StudyIdentity, volume_series

_PER_SLICE = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SliceLocation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "ImageComments",
    "KVP",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "EchoTime",
    "RepetitionTime",
    "EchoTrainLength",
    "SequenceName",
)


def _item(**attributes: object) -> DicomSequence:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return DicomSequence([ds])


def _frame_type(modality: str) -> tuple[str, DicomSequence]:
    keyword = "CTImageFrameTypeSequence" if modality == "CT" else "MRImageFrameTypeSequence"
    return keyword, _item(
        FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
        PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE",
    )


def enhanced_series(
    volume: np.ndarray,
    spacing: Sequence[float],
    *,
    identity: StudyIdentity,
    spec: SeriesSpec,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    row_direction: Sequence[float] = (1.0, 0.0, 0.0),
    column_direction: Sequence[float] = (0.0, 1.0, 0.0),
    slice_step: Sequence[float] | None = None,
    frame_order: Sequence[int] | None = None,
) -> Dataset:
    """One Enhanced CT (or, for spec.modality "MR", Enhanced MR) instance of `volume`.

    Geometry arguments mean what they mean in `dicom_node.synth.volume_series`. `frame_order`
    stores slice ``frame_order[f]`` as frame f+1, to model scanners that store frames in another
    order than the stack.
    """
    classic = volume_series(
        volume, spacing, identity=identity, spec=spec, origin=origin,
        row_direction=row_direction, column_direction=column_direction, slice_step=slice_step,
    )
    order = list(frame_order) if frame_order is not None else list(range(len(classic)))
    first = classic[0]
    ds = Dataset()
    ds.file_meta = first.file_meta
    for element in first:
        if element.keyword not in _PER_SLICE and element.keyword != "PixelData":
            ds.add(element)
    sop_class = EnhancedCTImageStorage if spec.modality == "CT" else EnhancedMRImageStorage
    sop_uid = generate_uid(SYNTH_UID_ROOT)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionDateTime = identity.study_date + identity.study_time
    ds.AcquisitionContextSequence = DicomSequence([])
    ds.NumberOfFrames = len(classic)
    if spec.modality == "MR":
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.AcquisitionContrast = "DIFFUSION" if spec.diffusion_b_value is not None else "T2"
        ds.ResonantNucleus = "1H"
        ds.MagneticFieldStrength = 1.5
        ds.ImagingFrequency = 63.9
        ds.KSpaceFiltering = "NONE"
        ds.ApplicableSafetyStandardAgency = "IEC"

    shared = Dataset()
    shared.PixelMeasuresSequence = _item(
        PixelSpacing=list(first.PixelSpacing), SliceThickness=first.SliceThickness
    )
    shared.PlaneOrientationSequence = _item(
        ImageOrientationPatient=list(first.ImageOrientationPatient)
    )
    if spec.modality == "CT":
        shared.PixelValueTransformationSequence = _item(
            RescaleIntercept=first.RescaleIntercept, RescaleSlope=first.RescaleSlope,
            RescaleType="HU",
        )
    shared.FrameVOILUTSequence = _item(WindowCenter=40, WindowWidth=80)
    keyword, value = _frame_type(spec.modality)
    setattr(shared, keyword, value)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    dimension_uid = generate_uid(SYNTH_UID_ROOT)
    ds.DimensionOrganizationSequence = _item(DimensionOrganizationUID=dimension_uid)
    ds.DimensionOrganizationType = "3D"
    index_item = Dataset()
    index_item.DimensionOrganizationUID = dimension_uid
    index_item.DimensionIndexPointer = 0x00200032
    index_item.FunctionalGroupPointer = 0x00209113
    index_item.DimensionDescriptionLabel = "Image Position"
    ds.DimensionIndexSequence = DicomSequence([index_item])

    per_frame = []
    for k in order:
        item = Dataset()
        item.FrameContentSequence = _item(
            FrameAcquisitionNumber=1, DimensionIndexValues=[k + 1], StackID="1",
            InStackPositionNumber=k + 1, FrameAcquisitionDateTime=ds.AcquisitionDateTime,
            FrameReferenceDateTime=ds.AcquisitionDateTime, FrameAcquisitionDuration=1000.0,
        )
        item.PlanePositionSequence = _item(
            ImagePositionPatient=list(classic[k].ImagePositionPatient)
        )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        setattr(ds, keyword, first.get(keyword))
    ds.PixelData = b"".join(bytes(classic[k].PixelData) for k in order)
    return ds
