"""Model-independent inputs of the DICOM encoders, in plain values (numbers, arrays, codes).

The workers package maps each pipeline's prediction onto these types; nothing here knows a
model. They are validated on construction (CONVENTIONS 5), so an encoder never meets a box
outside its image or a probability above one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from dicom_node.encode.codes import (
    ARTIFICIAL_INTELLIGENCE,
    FRACTURE,
    FRACTURE_MORPHOLOGY,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    Coded,
)
from dicom_node.encode.uids import UUID_ROOT, UidFactory
from dicom_node.uids import is_valid_uid

Clock = Callable[[], datetime]
"""Returns "now"; injected so that encoders are pure and tests are repeatable."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Pipeline(StrEnum):
    """The clinical pipelines whose results are encoded (DESIGN.md)."""

    STROKE = "stroke"
    ICH = "ich"
    FRACTURE = "fracture"


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of the model that produced the findings.

    Written as SEG Algorithm Identification, SR Algorithm Name/Version (TID 4019), the SR
    device observer (TID 1004) and the IHE AIR Contributing Equipment item. The Device UID is
    derived from `weights_sha256`, so new weights give a new device.
    """

    name: str
    version: str
    manufacturer: str
    model_name: str
    weights_sha256: str
    family: Coded = ARTIFICIAL_INTELLIGENCE

    def __post_init__(self) -> None:
        if not _SHA256.match(self.weights_sha256):
            raise ValueError("weights_sha256 must be 64 lower-case hex digits")
        for name in ("name", "version", "manufacturer", "model_name"):
            value = getattr(self, name)
            # LO (PS3.5 6.2): at most 64 characters, no backslash.
            if not value or len(value) > 64 or "\\" in value:
                raise ValueError(f"AlgorithmInfo.{name} must be 1-64 characters, no backslash")


def _check_probability(value: float | None, what: str) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must lie in [0, 1]")


def _check_label(label: str) -> None:
    # Segment Label and Tracking ID are LO; the label also names derived UIDs.
    if not label or len(label) > 48 or "\\" in label:
        raise ValueError("finding label must be 1-48 characters, no backslash")


@dataclass(frozen=True)
class Lesion:
    """One connected component of a mask finding: its volume, side and the image where it
    is largest (a source SOP Instance UID; in a multi-frame image, also its 1-based frame)."""

    volume_ml: float
    laterality: Coded | None = None
    key_sop_instance_uid: str | None = None
    key_frame_number: int | None = None

    def __post_init__(self) -> None:
        if not self.volume_ml >= 0:
            raise ValueError("lesion volume must not be negative")


@dataclass(frozen=True, eq=False)
class MaskFinding:
    """A binary mask aligned with the source images: ``mask[k]`` belongs to ``sources[k]``.

    Shape (frames, rows, columns) for a series, or (rows, columns) for one 2D image. Stroke
    infarcts, ICH haemorrhage masks and BLAST-CT classes are each one MaskFinding. The volume
    reported is ``mask.sum() * voxel_volume_mm3 / 1000`` ml.
    """

    label: str
    finding: Coded
    property_type: Coded
    finding_site: Coded
    mask: np.ndarray
    voxel_volume_mm3: float
    property_category: Coded = MORPHOLOGICALLY_ABNORMAL_STRUCTURE
    probability: float | None = None
    display_rgb: tuple[int, int, int] | None = None
    laterality: Coded | None = None
    """Side of the whole finding (the finding site's laterality modifier)."""
    lesions: tuple[Lesion, ...] = ()
    """Its connected components, largest first: the SR adds the lesion count, the largest
    lesion's volume and one group per lesion."""

    def __post_init__(self) -> None:
        _check_label(self.label)
        _check_probability(self.probability, "probability")
        if self.mask.ndim not in (2, 3):
            raise ValueError("mask must be 2D (rows, columns) or 3D (frames, rows, columns)")
        if self.mask.dtype != np.bool_ and not np.isin(self.mask, (0, 1)).all():
            raise ValueError("mask must be binary")
        if not self.voxel_volume_mm3 > 0:
            raise ValueError("voxel_volume_mm3 must be positive")

    @property
    def frames(self) -> np.ndarray:
        """The mask as bool (frames, rows, columns)."""
        m = self.mask.astype(bool)
        return m[np.newaxis] if m.ndim == 2 else m

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def volume_ml(self) -> float:
        """Voxel count x voxel volume, in millilitres (1 ml = 1000 mm3)."""
        return self.voxel_count * self.voxel_volume_mm3 / 1000.0

    @property
    def positive(self) -> bool:
        return self.voxel_count > 0


@dataclass(frozen=True)
class ProbabilityFinding:
    """A finding without a mask: the model's probability, its operating threshold, the
    decision, and the key images (SOP Instance UIDs of source images) that show it best."""

    label: str
    finding: Coded
    finding_site: Coded
    probability: float
    threshold: float
    positive: bool
    key_sop_instance_uids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_label(self.label)
        _check_probability(self.probability, "probability")
        _check_probability(self.threshold, "threshold")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in image pixel coordinates (column, row) as PS3.3 C.18.6.1.2
    defines them for SCOORD: (0, 0) is the top left corner of the top left pixel."""

    column_min: float
    row_min: float
    column_max: float
    row_max: float

    def __post_init__(self) -> None:
        if not (self.column_min < self.column_max and self.row_min < self.row_max):
            raise ValueError("box must have positive width and height")
        if self.column_min < 0 or self.row_min < 0:
            raise ValueError("box must not start before the image")

    def closed_polyline(self) -> np.ndarray:
        """Five (column, row) points, clockwise from the top left corner, last = first."""
        c0, r0, c1, r1 = self.column_min, self.row_min, self.column_max, self.row_max
        return np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]], dtype=np.float32)


@dataclass(frozen=True)
class BoxFinding:
    """A detection on a 2D image (e.g. a fracture on a radiograph) with its score."""

    label: str
    sop_instance_uid: str
    box: Box
    score: float
    finding_site: Coded
    finding: Coded = FRACTURE
    property_type: Coded = FRACTURE_MORPHOLOGY
    laterality: Coded | None = None
    """Side of the imaged part (the finding site's laterality modifier)."""

    def __post_init__(self) -> None:
        _check_label(self.label)
        _check_probability(self.score, "score")

    @property
    def positive(self) -> bool:
        return True


@dataclass(frozen=True)
class NotAnalysed:
    """The study was routed to a pipeline but could not be analysed; `reason` is shown to the
    reader (no PHI: say what was wrong with the data, not whose data it was).

    Any length is accepted: the encoder shapes it (UIDs stripped, cut, made encodable; see
    ``dicom_node.encode.text``), so a long exception text never stops the report."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("reason must not be empty")


@dataclass(frozen=True)
class Indeterminate(NotAnalysed):
    """The study was analysed but the node does not trust the answer (the input failed the
    model's quality gate, or the prediction was unstable): "indeterminate - read as usual",
    with `reason`. Reported like "not analysed", never as a negative."""


Finding = MaskFinding | ProbabilityFinding | BoxFinding


@dataclass(frozen=True)
class SeriesNumbers:
    """Series Numbers of the output series; the defaults keep them after acquired series."""

    seg: int = 9001
    sr: int = 9002
    kos: int = 9003


@dataclass(frozen=True)
class DocumentRef:
    """An earlier SR document that a new one supersedes: the identifiers its Predecessor
    Documents Sequence (0040,A360) names (PS3.3 C.17.2, SR Document General Module: Study
    Instance UID, Referenced Series Sequence > Series Instance UID, Referenced SOP Sequence >
    SOP Class and Instance UID)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str

    def __post_init__(self) -> None:
        for name in ("study_instance_uid", "series_instance_uid", "sop_class_uid",
                     "sop_instance_uid"):
            value = getattr(self, name)
            if not is_valid_uid(value):
                raise ValueError(f"{name} is not a valid UID")


@dataclass(frozen=True)
class EncodeContext:
    """What every encoder needs besides sources and findings, grouped to keep signatures short.

    `predecessors` are the SR documents an amendment's SR supersedes (empty for a first
    result); only the SR uses them."""

    pipeline: Pipeline
    algorithm: AlgorithmInfo
    uids: UidFactory
    clock: Clock
    series_numbers: SeriesNumbers = field(default_factory=SeriesNumbers)
    institution_name: str | None = None
    predecessors: tuple[DocumentRef, ...] = ()

    @classmethod
    def for_job(
        cls,
        study_instance_uid: str,
        pipeline: Pipeline,
        algorithm: AlgorithmInfo,
        clock: Clock,
        uid_root: str = UUID_ROOT,
        amendment: int = 0,
        predecessors: tuple[DocumentRef, ...] = (),
    ) -> EncodeContext:
        """The context of one job, keyed like the job: (study, pipeline, model version,
        amendment); see `UidFactory` for why an amendment gets new UIDs. `predecessors`: the
        earlier SR an amendment's SR supersedes."""
        uids = UidFactory(study_instance_uid, pipeline.value, algorithm.version, uid_root,
                          amendment)
        return cls(pipeline=pipeline, algorithm=algorithm, uids=uids, clock=clock,
                   predecessors=predecessors)
