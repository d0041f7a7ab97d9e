"""Plain values that cross the package boundary: the input volume and the Prediction.

Nothing here knows DICOM; ``dicom_node`` builds a :class:`Volume` from a series and the
encoders in ``dicom_node`` / ``hl7_fhir`` read a :class:`Prediction` (through ``workers``).
Geometry follows the DICOM patient coordinate system (LPS, PS3.3 C.7.6.2.1.1): ``affine``
maps voxel indices (z, y, x) to LPS millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Volume:
    """A scalar volume in Hounsfield units (CT) or scanner units (MR).

    ``array`` is (z, y, x); ``spacing`` is (z, y, x) in mm; ``affine`` is a 4x4 matrix from
    (z, y, x, 1) indices to LPS mm; ``slice_ids`` holds one opaque identifier per z index (the
    caller's SOP Instance UIDs, for instance) so that results can name their key slices.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    slice_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3-D (z, y, x), got shape {self.array.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"Volume spacing must be three positive mm values, got {self.spacing}")
        if self.affine.shape != (4, 4):
            raise ValueError("Volume affine must be 4x4")
        if self.slice_ids and len(self.slice_ids) != self.array.shape[0]:
            raise ValueError(
                f"{len(self.slice_ids)} slice ids for {self.array.shape[0]} slices"
            )

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def slice_id(self, index: int) -> str:
        """Identifier of slice ``index``; its decimal index when no ids were given."""
        return self.slice_ids[index] if self.slice_ids else str(index)

    @staticmethod
    def from_array(
        array: np.ndarray, spacing: tuple[float, float, float], slice_ids: tuple[str, ...] = ()
    ) -> Volume:
        """A volume with an axis-aligned affine built from ``spacing`` (index order z, y, x)."""
        affine = np.eye(4)
        affine[0, 0], affine[1, 1], affine[2, 2] = spacing
        return Volume(array=array, spacing=spacing, affine=affine, slice_ids=slice_ids)


Hemisphere = Literal["left", "right", "bilateral"]
Side = Literal["left", "right"]


@dataclass(frozen=True)
class Radiograph:
    """One projection radiograph (CR/DX) ready for a detection model.

    ``array`` is (rows, columns) float32 on the stored pixel grid (never resampled by the
    caller, so a box in its pixel coordinates is a box on the stored image): the Modality LUT
    or rescale applied, MONOCHROME1 already inverted, so that higher values are always more
    attenuating (bone bright); no VOI window applied (the model normalises intensities itself).
    ``pixel_spacing_mm`` is (row, column) spacing at the patient in mm (Pixel Spacing, or Imager
    Pixel Spacing corrected by the estimated magnification), None when the header does not say.
    ``body_part`` is an upper-case DICOM Body Part Examined defined term (``WRIST``, ``HAND``,
    ``FOREARM``...) or None when unknown; ``laterality`` the imaged side; ``image_id`` the
    caller's identifier (its SOP Instance UID), echoed in every detection on this image.
    """

    array: np.ndarray
    image_id: str
    pixel_spacing_mm: tuple[float, float] | None = None
    body_part: str | None = None
    laterality: Side | None = None
    view: str | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 2 or min(self.array.shape) < 8:
            raise ValueError(f"Radiograph array must be 2-D (rows, columns) of at least 8 x 8, "
                             f"got shape {self.array.shape}")
        if self.pixel_spacing_mm is not None and (
                len(self.pixel_spacing_mm) != 2 or min(self.pixel_spacing_mm) <= 0):
            raise ValueError(f"pixel spacing must be two positive mm values, "
                             f"got {self.pixel_spacing_mm}")
        if not self.image_id:
            raise ValueError("Radiograph needs an image_id")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))


@dataclass(frozen=True)
class Detection:
    """One detected finding on one radiograph.

    ``box`` is (x0, y0, x1, y1) in pixel coordinates of that radiograph's ``array`` as DICOM
    SCOORD defines them (PS3.3 C.18.6.1.2): x is the column, y the row, (0, 0) the top left
    corner of the top left pixel, so 0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows.
    ``label`` is the model card's class key (``fracture``); ``score`` its probability.
    """

    image_id: str
    box: tuple[float, float, float, float]
    score: float
    label: str

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.box
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            raise ValueError(f"detection box {self.box} must have 0 <= x0 < x1 and 0 <= y0 < y1")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError("detection score must lie in [0, 1]")


@dataclass(frozen=True)
class StudyInput:
    """Named channels of one study on ONE grid: same shape, spacing and affine.

    Stroke uses ``{"dwi": b≈1000 trace, "adc": ADC in 10^-6 mm²/s}`` (optionally ``"b0"``);
    ICH uses ``{"ct": HU}``. The caller resamples every channel onto one grid first (by patient
    coordinates, PS3.3 C.7.6.2.1.1); construction refuses channels that differ in shape, and
    spacing or affine that differ by more than 1e-3 mm.
    """

    volumes: Mapping[str, Volume]

    def __post_init__(self) -> None:
        vols = dict(self.volumes)
        if not vols:
            raise ValueError("StudyInput needs at least one volume")
        first_name, first = next(iter(vols.items()))
        for name, vol in vols.items():
            if vol.array.shape != first.array.shape:
                raise ValueError(f"channel {name!r} has shape {vol.array.shape}, "
                                 f"{first_name!r} has {first.array.shape}")
            if not np.allclose(vol.spacing, first.spacing, atol=1e-3) or not np.allclose(
                    vol.affine, first.affine, atol=1e-3):
                raise ValueError(f"channel {name!r} is not on the grid of {first_name!r}")
        object.__setattr__(self, "volumes", MappingProxyType(vols))

    @property
    def grid(self) -> Volume:
        """The first channel: its spacing, affine and slice ids describe every channel."""
        return next(iter(self.volumes.values()))

    @staticmethod
    def single(name: str, volume: Volume) -> StudyInput:
        """A one-channel input, e.g. ``StudyInput.single("ct", volume)``."""
        return StudyInput({name: volume})


@dataclass(frozen=True)
class Code:
    """A coded concept (PS3.3 Table 8.8-1: Code Value, Coding Scheme Designator, Meaning)."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a result: enough for the IHE AIR Contributing Equipment item."""

    model_id: str
    version: str
    name: str
    weights_sha256: str
    manufacturer: str
    not_for_clinical_use: bool


@dataclass(frozen=True)
class KeySlice:
    """The slice where a class is most probable."""

    index: int
    slice_id: str
    probability: float


@dataclass(frozen=True)
class ClassResult:
    """Study-level result for one output class."""

    key: str
    name: str
    code: Code
    probability: float
    threshold: float
    positive: bool
    key_slice: KeySlice | None


@dataclass(frozen=True)
class SegmentMask:
    """A binary mask aligned voxel for voxel with the input volume."""

    key: str
    name: str
    code: Code
    mask: np.ndarray
    volume_ml: float
    voxel_count: int


@dataclass(frozen=True)
class SaliencyMap:
    """A Grad-CAM map for one class on one input slice, in [0, 1], shape (y, x) of the input."""

    key: str
    slice_index: int
    slice_id: str
    heatmap: np.ndarray
    peak_yx: tuple[int, int]
    png: bytes


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds per stage, and the device that ran the model."""

    preprocess_s: float
    inference_s: float
    explain_s: float
    total_s: float
    device: str


@dataclass(frozen=True)
class Lesion:
    """One connected lesion of a segmentation, on the input grid.

    ``index`` is 1-based in order of decreasing volume; ``centroid_zyx`` is in voxel indices;
    ``bbox`` is (z0, y0, x0, z1, y1, x1) with exclusive ends; ``hemisphere`` is the patient side
    (LPS: +x is the patient's left, PS3.3 C.7.6.2.1.1) of the lesion's voxels relative to the
    brain's mid-sagittal plane, ``bilateral`` when both sides hold a substantial part.
    """

    index: int
    volume_ml: float
    voxel_count: int
    centroid_zyx: tuple[float, float, float]
    hemisphere: Hemisphere
    bbox: tuple[int, int, int, int, int, int]
    slice_index_of_max_area: int


@dataclass(frozen=True)
class Prediction:
    """What a pipeline returns for one study.

    ``slice_probabilities`` is (n_input_slices, n_classes) in the order of ``classes``; empty
    (0, n) for segmentation-only models. ``masks`` are uint8 0/1 arrays with the input's shape.
    ``lesions`` (segmentation pipelines such as stroke) are the connected components of the
    union mask, largest first; ``laterality`` is the side of all of them together (None when
    there is no lesion or the pipeline does not say).

    Detection pipelines (fracture on radiographs) fill ``detections`` (every box at or above the
    card's box threshold, highest score first); their ``slice_ids`` are the input images' ids
    and ``slice_probabilities`` (n_images, n_classes) the image-level probabilities; each
    class's study probability is its highest image probability and its key slice that image.
    """

    pipeline: str
    model: ModelInfo
    classes: tuple[ClassResult, ...]
    slice_probabilities: np.ndarray
    slice_ids: tuple[str, ...]
    masks: tuple[SegmentMask, ...] = ()
    saliency: tuple[SaliencyMap, ...] = ()
    timings: Timings | None = None
    schema_version: int = SCHEMA_VERSION
    lesions: tuple[Lesion, ...] = ()
    laterality: Hemisphere | None = None
    detections: tuple[Detection, ...] = ()

    @property
    def positive(self) -> tuple[str, ...]:
        """Keys of the classes at or above their threshold."""
        return tuple(c.key for c in self.classes if c.positive)

    @property
    def study_probabilities(self) -> dict[str, float]:
        """Class key -> study-level probability."""
        return {c.key: c.probability for c in self.classes}

    @property
    def thresholds(self) -> dict[str, float]:
        """Class key -> operating threshold from the model card."""
        return {c.key: c.threshold for c in self.classes}

    def result(self, key: str) -> ClassResult:
        """The result for class ``key``; KeyError when the model has no such class."""
        for c in self.classes:
            if c.key == key:
                return c
        raise KeyError(key)
