"""Radiograph studies as CR and DX devices send them, built from the project's radiograph
phantoms (the held-out family: not what the demo model was trained on), and the real CR/DX
files that pydicom, pydicom-data and deid-data ship.

Each synthetic case varies what a reader meets: CR or DX, MONOCHROME1 or 2, 8 to 16 bits, the
transfer syntax (native, JPEG lossless, JPEG-LS, JPEG 2000, RLE, deflate), image size (512 px to
about 3k px) and spacing (Pixel Spacing, Imager Pixel Spacing with or without a magnification
factor), for presentation or for processing; and two cases the model must refuse with a reason
(a chest radiograph, a colour image). The truth boxes come along in stored-pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deid_data
import numpy as np
import pydicom
from pydicom.uid import generate_uid

from dicom_node.synth import SYNTH_UID_ROOT
from inference.phantoms.radiograph import RadiographPhantom, RadiographSpec, make_radiograph
from tests.support.radiographs import RadiographSpec as FileSpec
from tests.support.radiographs import radiograph_identity, write_radiograph

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FractureCase:
    """One study: the phantom images to draw (body part, fractures, size) and how to write
    them. `expect` is the job outcome: `result` or `not_analysed`; `reason` the outcome code."""

    name: str
    body_part: str
    fractures: int = 1
    size: tuple[int, int] | None = None
    views: int = 1
    file: dict[str, Any] = field(default_factory=dict)
    expect: str = "result"
    reason: str | None = None
    seed: int = 11
    colour: bool = False


CASES: tuple[FractureCase, ...] = (
    FractureCase("dx-mono2-native-wrist", "WRIST", size=(640, 512),
                 file={"modality": "DX", "photometric": "MONOCHROME2", "bits": 12}),
    FractureCase("cr-mono1-jpeg-lossless-forearm", "FOREARM", seed=12,
                 file={"modality": "CR", "photometric": "MONOCHROME1", "bits": 16,
                       "transfer_syntax": "jpeg-lossless", "spacing_kind": "imager"}),
    FractureCase("dx-jpeg-ls-3k-leg", "LEG", size=(2900, 2400), seed=13,
                 file={"modality": "DX", "bits": 16, "transfer_syntax": "jpeg-ls",
                       "spacing_kind": "imager+ermf", "spacing": (0.1, 0.1)}),
    FractureCase("cr-jpeg2000-hand", "HAND", seed=14,
                 file={"modality": "CR", "photometric": "MONOCHROME1", "bits": 8,
                       "transfer_syntax": "jpeg2000", "spacing": (0.2, 0.2)}),
    FractureCase("dx-rle-ankle-two-views", "ANKLE", views=2, seed=15,
                 file={"modality": "DX", "bits": 12, "transfer_syntax": "rle"}),
    FractureCase("dx-processing-deflate-humerus", "HUMERUS", seed=16,
                 file={"modality": "DX", "bits": 16, "voi": None,
                       "transfer_syntax": "deflate", "presentation_intent": "FOR PROCESSING"}),
    FractureCase("dx-normal-knee", "KNEE", fractures=0, seed=17,
                 file={"modality": "DX", "bits": 12}),
    FractureCase("dx-chest", "FOREARM", fractures=0, seed=18, expect="not_analysed",
                 reason="body_part_not_supported",
                 file={"modality": "DX", "body_part": "CHEST",
                       "series_description": "Chest PA"}),
    FractureCase("cr-colour", "WRIST", seed=19, colour=True, expect="not_analysed",
                 reason="unsupported_photometric", file={"modality": "CR"}),
)


LOCALISATION_CASES: tuple[FractureCase, ...] = tuple(
    FractureCase(f"localise-{i:02d}-{part.lower()}", part, seed=100 + i, size=(576, 480),
                 file={"modality": "DX", "bits": 12})
    for i, part in enumerate(("WRIST", "FOREARM", "HAND", "ANKLE", "LEG", "HUMERUS", "FOOT",
                              "ELBOW", "KNEE", "FEMUR") * 2))
"""Twenty more held-out phantoms with one fracture each (seeds fixed before any result was
seen): with the cases above, the sample on which the boxes are checked against the drawn
fractures."""


@dataclass(frozen=True)
class WrittenRadiograph:
    """One image file with its phantom (None for a real file)."""

    path: Path
    sop_instance_uid: str
    phantom: RadiographPhantom | None


@dataclass(frozen=True)
class WrittenFracture:
    case: FractureCase
    study_instance_uid: str
    images: tuple[WrittenRadiograph, ...]

    @property
    def files(self) -> list[Path]:
        return [i.path for i in self.images]


def _scaled(image: np.ndarray) -> np.ndarray:
    """The phantom's stored values as the builder's [0, 1] attenuation."""
    low, high = float(image.min()), float(image.max())
    return ((image - low) / max(high - low, 1e-6)).astype(np.float64)


def _colour(path: Path) -> None:
    """Rewrites a greyscale CR file as RGB (three samples per pixel): a colour image the
    model must refuse by its photometric."""
    ds = pydicom.dcmread(path)
    grey = ds.pixel_array.astype(np.uint16) >> max(int(ds.BitsStored) - 8, 0)
    rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for keyword in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept",
                    "RescaleType"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = rgb.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_fracture_study(folder: Path, case: FractureCase, index: int) -> WrittenFracture:
    """Writes the case's images (one series per view) under `folder/<case>`."""
    identity = radiograph_identity(
        patient_id=f"XR-{index:04d}", patient_name=f"Phantom^Radiograph{index}",
        accession_number=f"XRACC{index:04d}",
        study_instance_uid=generate_uid(SYNTH_UID_ROOT))
    out = folder / case.name
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for view in range(case.views):
        rows, cols = case.size or (None, None)
        phantom = make_radiograph(RadiographSpec(
            body_part=case.body_part, fractures=case.fractures if view == 0 else 0,
            family="heldout", seed=case.seed * 10 + view, rows=rows, cols=cols))
        header: dict[str, Any] = {
            "identity": identity, "laterality": "L" if phantom.laterality == "left" else "R",
            "body_part": case.body_part, "view": "PA" if view == 0 else "LL",
            "series_description": f"{case.body_part.title()} view {view + 1}"}
        spec = FileSpec(**(header | case.file))
        path = write_radiograph(out / f"view{view + 1}.dcm", _scaled(phantom.image), spec)
        if case.colour:
            _colour(path)
        images.append(WrittenRadiograph(path, spec.sop_instance_uid, phantom))
    return WrittenFracture(case, identity.study_instance_uid, tuple(images))


# --- the real files: no fracture drawn in them; a result or a not-analysed report ---------------

_PYDICOM = Path(pydicom.__file__).parent / "data"


def _pydicom_data() -> Path:
    import data_store  # pydicom-data's package

    return Path(data_store.__file__).parent / "data"


def real_files() -> list[Path]:
    """The real CR/DX files sent, grouped into studies by their own Study Instance UIDs: a DX
    chest (deid-data), a CR chest in JPEG 2000 and a CR of the distal tibia native and in lossy
    JPEG 2000 (pydicom-data), a 16 x 16 CR of the cervical spine and a CR without Pixel Data
    (pydicom)."""
    return [
        Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm",
        _pydicom_data() / "RG1_J2KR.dcm",
        _pydicom_data() / "RG3_UNCR.dcm",
        _pydicom_data() / "RG3_J2KI.dcm",
        _PYDICOM / "test_files" / "dicomdirtests" / "77654033" / "CR1" / "6154",
        _PYDICOM / "charset_files" / "chrKoreanMulti.dcm",
    ]
