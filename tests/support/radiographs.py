"""Builds synthetic CR and DX radiograph files for tests, and says what a reader must return.

`write_radiograph(path, image, **spec)` writes a valid CR Image (PS3.3 A.2) or Digital X-Ray
Image For Presentation / For Processing (A.26) instance of `image` (float, 0 = no attenuation,
1 = most, bone bright; NaN = padding outside the collimated field) with every variant a reader
meets: photometric, bits, spacing kind, Modality LUT, VOI, transfer syntax. Compressed syntaxes
are written by the real DCMTK tools (dcmcjpeg, dcmcjpls, dcmcrle) or by pydicom's own encoders
(JPEG 2000 through pylibjpeg-openjpeg, deflate).

`expected_pixels(image, spec)` is the oracle: from the builder's own parameters (the quantiser,
its rescale, its LUT formulas) it computes the float values a reader following
dicom_node/radiograph.py's rules returns, exactly, for lossless syntaxes.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from dicom_node.synth import SYNTH_UID_ROOT, StudyIdentity

TransferSyntax = Literal["explicit", "jpeg-lossless", "jpeg-ls", "jpeg2000", "rle", "deflate"]
TRANSFER_SYNTAXES: tuple[TransferSyntax, ...] = (
    "explicit", "jpeg-lossless", "jpeg-ls", "jpeg2000", "rle", "deflate")
_DCMTK_ENCODERS = {"jpeg-lossless": "dcmcjpeg", "jpeg-ls": "dcmcjpls", "rle": "dcmcrle"}

# CR rescale: an affine Modality LUT a reader must apply (DX requires slope 1, intercept 0).
CR_RESCALE = (0.5, 100.0)
_REGION = {  # Body Part Examined -> CID 4031 keyword, for the Anatomic Region Sequence
    "HAND": "Hand", "WRIST": "WristJoint", "FOREARM": "Forearm", "ELBOW": "ElbowJoint",
    "HUMERUS": "Humerus", "SHOULDER": "Shoulder", "FOOT": "Foot", "ANKLE": "AnkleJoint",
    "LEG": "LowerLeg", "KNEE": "Knee", "FEMUR": "Femur", "HIP": "Hip", "PELVIS": "Pelvis",
    "CHEST": "Chest", "SKULL": "Skull", "CSPINE": "CervicalSpine", "LSPINE": "LumbarSpine",
}


def radiograph_identity(**changes: Any) -> StudyIdentity:
    """A sample patient and study for radiographs (synthetic names only)."""
    base = StudyIdentity(patient_id="XR-PHANTOM-01", patient_name="Phantom^Radiograph",
                         accession_number="XRACC0001", study_description="XR WRIST 2 VIEWS")
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class RadiographSpec:
    """Everything that varies between the radiographs a test needs. `extra` sets further
    attributes by keyword after the rest (to model odd headers)."""

    modality: Literal["CR", "DX"] = "DX"
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    bits: Literal[8, 12, 16] = 12
    spacing: tuple[float, float] | None = (0.15, 0.15)
    spacing_kind: Literal["pixel", "imager", "imager+ermf"] | None = "pixel"
    magnification: float = 1.2
    body_part: str | None = "WRIST"
    anatomic_region: bool = True
    laterality: Literal["L", "R", "U", "B"] | None = "L"
    view: str | None = "PA"
    presentation_intent: Literal["FOR PRESENTATION", "FOR PROCESSING"] = "FOR PRESENTATION"
    transfer_syntax: TransferSyntax = "explicit"
    modality_lut: Literal["rescale", "sequence"] | None = "rescale"
    voi: Literal["window", "lut-sequence"] | None = "window"
    padding_value: int | None = None
    series_description: str = "Wrist PA"
    identity: StudyIdentity = field(default_factory=radiograph_identity)
    series_instance_uid: str = field(default_factory=lambda: generate_uid(SYNTH_UID_ROOT))
    sop_instance_uid: str = field(default_factory=lambda: generate_uid(SYNTH_UID_ROOT))
    extra: tuple[tuple[str, Any], ...] = ()


def write_radiograph(path: str | Path, image: np.ndarray, spec: RadiographSpec | None = None,
                     **changes: Any) -> Path:
    """Writes `image` as one CR/DX file at `path` (spec fields may be given as keywords);
    returns the path."""
    spec = dataclasses.replace(spec or RadiographSpec(), **changes)
    if spec.modality == "DX" and (spec.spacing is None or spec.spacing_kind is None):
        raise ValueError("the DX Detector module requires Imager Pixel Spacing (type 1)")
    if spec.presentation_intent == "FOR PROCESSING" and spec.voi is not None:
        raise ValueError("a For Processing image carries no VOI (PS3.3 C.8.11.3)")
    if spec.modality == "DX" and spec.modality_lut == "sequence":
        raise ValueError("the DX Image module requires Rescale Slope 1 / Intercept 0 instead of "
                         "a Modality LUT Sequence (PS3.3 C.8.11.3)")
    target = Path(path)
    ds = _dataset(image, spec)
    if spec.transfer_syntax in _DCMTK_ENCODERS:
        with tempfile.TemporaryDirectory() as tmp:
            native = Path(tmp) / "native.dcm"
            ds.save_as(native, enforce_file_format=True)
            _dcmtk(_DCMTK_ENCODERS[spec.transfer_syntax], native, target)
        return target
    if spec.transfer_syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        ds.LossyImageCompression = "00"
    elif spec.transfer_syntax == "deflate":
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(target, enforce_file_format=True)
    return target


def stored_values(image: np.ndarray, spec: RadiographSpec) -> np.ndarray:
    """The stored pixel values written for `image`: [0, 1] quantised to Bits Stored, reversed
    for MONOCHROME1, padding (NaN) given the padding value."""
    top = 2 ** spec.bits - 1
    level = np.rint(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * top).astype(np.int64)
    stored = top - level if spec.photometric == "MONOCHROME1" else level
    if spec.padding_value is not None:
        stored = np.where(np.isnan(image), spec.padding_value, stored)
    return stored.astype(np.uint8 if spec.bits == 8 else np.uint16)


def expected_pixels(image: np.ndarray, spec: RadiographSpec) -> np.ndarray:
    """What read_radiograph returns for `image` written with `spec` (lossless syntaxes)."""
    domain = np.arange(2 ** spec.bits, dtype=np.int64)
    chain = _chain(domain, spec)
    padding = (domain == spec.padding_value) if spec.padding_value is not None else None
    valid = chain[~padding] if padding is not None else chain
    low, high = float(valid.min()), float(valid.max())
    if spec.photometric == "MONOCHROME1":
        chain = (low + high) - chain
    if padding is not None:
        chain = np.where(padding, low, chain)
    return chain[stored_values(image, spec).astype(np.int64)].astype(np.float32)


def expected_spacing(spec: RadiographSpec) -> tuple[float, float] | None:
    """The spacing in mm at the patient a reader reports for `spec`."""
    if spec.spacing is None or spec.spacing_kind is None:
        return None
    if spec.spacing_kind == "imager+ermf":
        return (spec.spacing[0] / spec.magnification, spec.spacing[1] / spec.magnification)
    return spec.spacing


# --- value formulas (the builder's own, used both to write the file and in the oracle) ---------

def _modality_lut_table(bits: int) -> np.ndarray:
    """A non-affine, increasing Modality LUT: a square-root curve onto 16 bits."""
    top = 2 ** bits - 1
    return np.rint(np.sqrt(np.arange(top + 1) / top) * 65535).astype(np.int64)


def _voi_lut_table(entries: int) -> np.ndarray:
    """A sigmoid VOI LUT onto the full 16 bits over `entries` input values from 0."""
    curve = 1 / (1 + np.exp(-8 * (np.linspace(0.0, 1.0, entries) - 0.5)))
    return np.rint((curve - curve[0]) / (curve[-1] - curve[0]) * 65535).astype(np.int64)


def _modality_range(spec: RadiographSpec) -> int:
    """The number of modality output values a VOI LUT must cover (from 0)."""
    top = 2 ** spec.bits - 1
    if spec.modality_lut == "sequence":
        return 65536
    if spec.modality_lut == "rescale" and spec.modality == "CR":
        return int(top * CR_RESCALE[0] + CR_RESCALE[1]) + 1
    return top + 1


def _chain(stored: np.ndarray, spec: RadiographSpec) -> np.ndarray:
    if spec.modality_lut == "sequence":
        values = _modality_lut_table(spec.bits)[stored].astype(np.float64)
    elif spec.modality_lut == "rescale" and spec.modality == "CR":
        values = stored * CR_RESCALE[0] + CR_RESCALE[1]
    else:
        values = stored.astype(np.float64)
    for_display = spec.modality == "CR" or spec.presentation_intent == "FOR PRESENTATION"
    if spec.voi == "lut-sequence" and for_display:
        table = _voi_lut_table(_modality_range(spec))
        values = table[np.clip(np.rint(values).astype(np.int64), 0, table.size - 1)].astype(
            np.float64)
    return values


# --- the dataset ---------------------------------------------------------------------------------

def _sop_class(spec: RadiographSpec) -> str:
    if spec.modality == "CR":
        return ComputedRadiographyImageStorage
    if spec.presentation_intent == "FOR PROCESSING":
        return DigitalXRayImageStorageForProcessing
    return DigitalXRayImageStorageForPresentation


def _dataset(image: np.ndarray, spec: RadiographSpec) -> Dataset:
    ds = _header(spec)
    _pixels(ds, image, spec)
    _spacing(ds, spec)
    _anatomy(ds, spec)
    _luts(ds, spec)
    if spec.modality == "DX":
        _dx_modules(ds, spec)
    for keyword, value in spec.extra:
        if value is None:
            delattr(ds, keyword) if keyword in ds else None
        else:
            setattr(ds, keyword, value)
    return ds


def _header(spec: RadiographSpec) -> Dataset:
    identity, sop_class = spec.identity, _sop_class(spec)
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(spec.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, spec.sop_instance_uid
    ds.PatientName, ds.PatientID = identity.patient_name, identity.patient_id
    ds.PatientBirthDate, ds.PatientSex = identity.patient_birth_date, identity.patient_sex
    ds.StudyInstanceUID, ds.StudyID = identity.study_instance_uid, identity.study_id
    ds.StudyDate, ds.StudyTime = identity.study_date, identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.ReferringPhysicianName = identity.referring_physician
    ds.StudyDescription = identity.study_description
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = spec.modality, spec.series_instance_uid, 1
    ds.SeriesDescription = spec.series_description
    ds.Manufacturer, ds.InstitutionName = "InferNode Phantom", "InferNode Sample Hospital"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = identity.study_date, identity.study_time
    ds.PatientOrientation = ["P", "F"] if spec.modality == "DX" else ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BurnedInAnnotation = "NO"
    ds.ViewPosition = spec.view or ""
    ds.BodyPartExamined = spec.body_part or ""
    return ds


def _pixels(ds: Dataset, image: np.ndarray, spec: RadiographSpec) -> None:
    stored = stored_values(image, spec)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, spec.photometric
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 8 if spec.bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = spec.bits, spec.bits - 1, 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds.LossyImageCompression = "00"
    if spec.padding_value is not None:
        ds.PixelPaddingValue = spec.padding_value


def _spacing(ds: Dataset, spec: RadiographSpec) -> None:
    if spec.spacing is None or spec.spacing_kind is None:
        return
    values = [float(v) for v in spec.spacing]
    if spec.spacing_kind == "pixel":
        ds.PixelSpacing = values
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "magnification corrected"
        if spec.modality == "DX":
            ds.ImagerPixelSpacing = [v * spec.magnification for v in values]
            ds.EstimatedRadiographicMagnificationFactor = spec.magnification
    else:
        ds.ImagerPixelSpacing = values
        if spec.spacing_kind == "imager+ermf":
            ds.EstimatedRadiographicMagnificationFactor = spec.magnification


def _anatomy(ds: Dataset, spec: RadiographSpec) -> None:
    if spec.modality == "DX":
        ds.ImageLaterality = spec.laterality or "U"
        ds.AnatomicRegionSequence = []
    elif spec.laterality in ("L", "R"):
        ds.Laterality = spec.laterality
    keyword = _REGION.get(spec.body_part or "")
    if spec.anatomic_region and keyword is not None:
        code = getattr(codes.cid4031, keyword)
        region = Dataset()
        region.CodeValue, region.CodingSchemeDesignator = code.value, code.scheme_designator
        region.CodeMeaning = code.meaning
        ds.AnatomicRegionSequence = [region]


def _luts(ds: Dataset, spec: RadiographSpec) -> None:
    if spec.modality_lut == "sequence":
        item = Dataset()
        table = _modality_lut_table(spec.bits)
        item.LUTDescriptor = [table.size % 65536, 0, 16]
        item.ModalityLUTType = "US"
        item.LUTData = table.astype("<u2").tobytes()
        ds.ModalityLUTSequence = [item]
    elif spec.modality_lut == "rescale" or spec.modality == "DX":
        slope, intercept = CR_RESCALE if spec.modality == "CR" else (1.0, 0.0)
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if spec.voi == "window":
        top = _modality_range(spec) - 1
        ds.WindowCenter, ds.WindowWidth = top / 2, top + 1
    elif spec.voi == "lut-sequence":
        table = _voi_lut_table(_modality_range(spec))
        item = Dataset()
        item.LUTDescriptor = [table.size % 65536, 0, 16]
        item.LUTExplanation = "SIGMOID TONE SCALE"
        item.LUTData = table.astype("<u2").tobytes()
        ds.VOILUTSequence = [item]


def _dx_modules(ds: Dataset, spec: RadiographSpec) -> None:
    """DX Series, DX Image, DX Detector and Acquisition Context (PS3.3 C.8.11, C.7.6.14)."""
    ds.PresentationIntentType = spec.presentation_intent
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1
    ds.PresentationLUTShape = "INVERSE" if spec.photometric == "MONOCHROME1" else "IDENTITY"
    ds.DetectorType = "SCINTILLATOR"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []


def _dcmtk(tool: str, source: Path, target: Path) -> None:
    binary = shutil.which(tool, path="/usr/bin")
    if binary is None:
        import pytest

        pytest.skip(f"DCMTK tool {tool} is not installed (Debian dcmtk): run scripts/setup.sh")
    done = subprocess.run([binary, str(source), str(target)], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
